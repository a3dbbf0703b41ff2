# A till's financial day of one branch -> a QuickBooks Online JournalEntry
# (the default mapping of the daily summary, handlers/summary.c).
#
# Input: {source, existing, settings, connection}. The gateway has done the
# arithmetic: source holds
#   doc_number     MPLUS-<branch>-<date>, or its correction ...C<n>
#   date           the financial day (YYYY-MM-DD);  branch: the branch number
#   private_note   what the entry is;  correction: true for a correction
#   lines[]        {posting (Credit | Debit), account (Account Id), amount,
#                   tax_code (TaxCode Id) and tax_amount (its VAT) or null,
#                   description}: turnover per income account and VAT code,
#                   payments per deposit account, rounding; for a correction
#                   only what changed
#   tax_lines[]    a VAT company's tax per rate: {rate (TaxRate Id), percent,
#                  net, amount}; null without tax codes
#   total_tax      the sum of the lines' tax_amount (credits positive)
#   department, class   of the branch (sales_department_by_branch,
#                  sales_class_by_branch), or null
#   journal        Mplus's own getJournals figures of the day (for reference)
#
# Members left null (and objects left empty) are dropped by the gateway.
# Keep amounts as the text they come in: the gateway sends them to QuickBooks
# as exact numbers. Do not compute with them here (jq numbers are doubles).
.source as $s
| {
    DocNumber: $s.doc_number,
    TxnDate: $s.date,
    PrivateNote: $s.private_note,
    Line: [ $s.lines[] | {
        DetailType: "JournalEntryLineDetail",
        Amount: .amount,
        Description: (.description | gw_nonempty | gw_trunc(4000)),
        JournalEntryLineDetail: {
          PostingType: .posting,
          AccountRef: {value: .account},
          TaxCodeRef: (.tax_code | if . then {value: .} else null end),
          TaxApplicableOn: (if .tax_code then "Sales" else null end),
          TaxAmount: .tax_amount,
          DepartmentRef: ($s.department | if . then {value: .} else null end),
          ClassRef: ($s.class | if . then {value: .} else null end)
        }
      } ],
    TxnTaxDetail: ($s.tax_lines | if . then {
        TotalTax: $s.total_tax,
        TaxLine: [ .[] | {
          DetailType: "TaxLineDetail", Amount: .amount,
          TaxLineDetail: {TaxRateRef: {value: .rate}, PercentBased: true, TaxPercent: .percent,
                          NetAmountTaxable: .net} } ] } else null end)
  }
