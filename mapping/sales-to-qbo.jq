# Mplus sales document -> QuickBooks Online SalesReceipt, RefundReceipt,
# Invoice or CreditMemo (the default mapping).
#
# Input: {source, existing, settings, connection}. The gateway has done the
# arithmetic: source holds
#   entity         the QuickBooks document type to make
#   kind           receipt | invoice | order;  credit: true for refunds/credit memos
#   document       the Mplus document as polled (money as decimal text), but
#                  its lines: each is in lines[].mplus
#   customer       the QuickBooks Customer Id
#   lines[]        {item, sku, tax_code, amount, qty, unit_price, amount_incl, description, mplus}
#                  amount = round(qty x unit_price, 2), excl. VAT, in the document's sign;
#                  description = the line's text without the white space at its ends (as
#                  gw_nonempty trims) and cut to QuickBooks' 4,000 characters, or null
#   tax_total, total, rounding   decimal text; rounding_item: the Item for a rounding line,
#                  rounding_tax_code: its TaxCode (a VAT company)
#   tax_lines[]    a VAT company's tax per rate, from Mplus's vatGroupList:
#                  {rate (TaxRate Id), percent, net, amount}; null elsewhere
#   doc_number     the Mplus transaction number, trimmed (as gw_nonempty trims) and cut
#                  to QuickBooks' 21 characters, or null
#   txn_date       the day to book: the document's financial date, or the first open
#                  day when QuickBooks' books are closed for it and closed_period =
#                  next_open
#   private_note, mplus_id, payment_method, deposit_account, class, term,
#   department     the sale's Department (by country, else by branch), or null
# existing is the booked document's id map entry on an update, else null.
#
# Members left null (and objects left empty) are dropped by the gateway.
# Keep amounts as the text they come in: the gateway sends them to QuickBooks
# as exact numbers. Do not compute with them here (jq numbers are doubles).
.source as $s | $s.document as $d
| (if $d.vatMethod == "VAT-METHOD-EXCLUSIVE" then "TaxExcluded" else "TaxInclusive" end) as $taxcalc
| ($taxcalc == "TaxInclusive") as $inclusive
| ($s.class | if . then {value: .} else null end) as $class
| {
    DocNumber: $s.doc_number,
    TxnDate: ($s.txn_date // ($d.financialDate | gw_nonempty)),
    PrivateNote: $s.private_note,
    CustomerRef: {value: $s.customer},
    GlobalTaxCalculation: $taxcalc,
    Line: (
      [ $s.lines[] | {
          DetailType: "SalesItemLineDetail",
          Amount: .amount,
          Description: .description,
          SalesItemLineDetail: {
            ItemRef: {value: .item},
            Qty: .qty,
            UnitPrice: .unit_price,
            TaxCodeRef: {value: .tax_code},
            TaxInclusiveAmt: (if $inclusive then .amount_incl else null end),
            ClassRef: $class
          }
        } ]
      + (if $s.rounding != "0.00" then
          [ { DetailType: "SalesItemLineDetail", Amount: $s.rounding, Description: "Rounding",
              SalesItemLineDetail: {ItemRef: {value: $s.rounding_item}, Qty: "1", UnitPrice: $s.rounding,
                TaxCodeRef: ($s.rounding_tax_code | if . then {value: .} else null end)} } ]
        else [] end)
    ),
    TxnTaxDetail: {TotalTax: $s.tax_total,
      TaxLine: ($s.tax_lines | if . then [ .[] | {
          DetailType: "TaxLineDetail", Amount: .amount,
          TaxLineDetail: {TaxRateRef: {value: .rate}, PercentBased: true, TaxPercent: .percent,
                          NetAmountTaxable: .net} } ] else null end)},
    PaymentMethodRef: ($s.payment_method | if . and ($s.entity | endswith("Receipt")) then {value: .} else null end),
    DepositToAccountRef: ($s.deposit_account | if . and ($s.entity | endswith("Receipt")) then {value: .} else null end),
    SalesTermRef: ($s.term | if . and $s.entity == "Invoice" then {value: .} else null end),
    DueDate: (if $s.entity == "Invoice" then ($d.dueDate | gw_nonempty) else null end),
    DepartmentRef: ($s.department | if . then {value: .} else null end),
    ShipMethodRef: ($d.deliveryMethod | gw_nonempty | if . then {value: ., name: .} else null end),
    BillAddr: ($d.invoiceAddress as $a | if $a then
      {Line1: ($a.address | gw_nonempty | gw_trunc(500)), City: ($a.city | gw_nonempty | gw_trunc(255)),
       PostalCode: ($a.zipcode | gw_nonempty | gw_trunc(30)), Country: ($a.country | gw_nonempty)}
      else null end),
    ShipAddr: ($d.deliveryAddress as $a | if $a then
      {Line1: ($a.address | gw_nonempty | gw_trunc(500)), City: ($a.city | gw_nonempty | gw_trunc(255)),
       PostalCode: ($a.zipcode | gw_nonempty | gw_trunc(30)), Country: ($a.country | gw_nonempty)}
      else null end)
  }
