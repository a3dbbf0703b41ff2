# Mplus article -> QuickBooks Online Item (the default mapping).
#
# Input: {source, existing, settings, connection}, where source holds
#   article    the Mplus article as polled (money as decimal text)
#   product    its product: productNumber, description, extraText, groupNumbers
#   category   the QuickBooks Category Item Id of the product's first article
#              group, or null (products_categories off, or no group); for a
#              variant with products_variant_parent = category, its product's
#   names      {product, article, colour, size}: the product's and the article's
#              description, colour and size as gw_clean makes them (null when
#              nothing is left), and {extra, invoice, barcode}: the article's
#              extraText, invoiceText and barcode as gw_nonempty makes them;
#              without it (a preview's own sample) the program cleans them itself
# existing is null: the gateway compares what this program makes with what it
# sent before, and sends only what changed (fields in products_create_only,
# and QtyOnHand, InvStartDate and TrackQtyOnHand, only on create).
#
# The filter: return {gw_skip: "reason"} to leave an article out. Its event
# ends skipped with that reason, before any QuickBooks call. The settings
# products_only_active, products_only_webshop, products_groups,
# products_exclude_groups and products_turnover_groups are applied here; add
# any rule of your own the same way, e.g. to keep out articles priced 0:
#     if $a.priceIncl == "0.00" then {gw_skip: "no price"} else . end
#
# Attributes and characteristics (Mplus customFieldList) have no QuickBooks
# Item field of their own; map them by hand, e.g. a custom field "Material"
# into the description:
#     | .Description += ([$a.customFieldList[]? | select(.name == "Material")
#                         | "\nMaterial: " + (.value | tostring)] | add // "")
#
# Members left null (and objects left empty) are dropped by the gateway. A
# Name over 100 characters is cut there (QuickBooks' limit), with a note.
# Keep prices as the text they come in: the gateway sends them to QuickBooks
# as exact numbers.
.source as $src | $src.article as $a | .settings as $s
| ($a.turnoverGroup | if . == null then null else tostring end) as $tg
| if $s.products_only_active and ($a.active == false or $a.discontinued == true) then
    {gw_skip: "inactive article (products_only_active)"}
  elif $s.products_only_webshop and ($a.webshop != true) then
    {gw_skip: "not a webshop article (products_only_webshop)"}
  elif ($s.products_groups | length) > 0
       and (any($src.product.groupNumbers[]? | tostring; IN($s.products_groups[])) | not) then
    {gw_skip: "article group not in products_groups"}
  elif ($s.products_exclude_groups | length) > 0
       and any($src.product.groupNumbers[]? | tostring; IN($s.products_exclude_groups[])) then
    {gw_skip: "article group in products_exclude_groups"}
  elif ($s.products_turnover_groups | length) > 0 and (any($s.products_turnover_groups[]; . == $tg) | not) then
    {gw_skip: "turnover group not in products_turnover_groups"}
  else
    # source.names holds the names cleaned and the texts trimmed already (in
    # jq that costs more than the rest); a sample without it is cleaned here.
    ($src.names // {product: ($src.product.description | gw_clean),
                    article: ($a.description | gw_clean), colour: ($a.colour | gw_clean),
                    size: ($a.size | gw_clean), extra: ($a.extraText | gw_nonempty),
                    invoice: ($a.invoiceText | gw_nonempty),
                    barcode: ($a.barcode | gw_nonempty)}) as $n
    | $n.product as $product | $n.article as $article
    | $n.colour as $colour | $n.size as $size
    | ($colour != null or $size != null) as $variant
    | (if $variant then
         (if $product then $product elif $article then $article else "Article" end) + " – "
         + (if $colour == null then $size | tostring elif $size == null then $colour | tostring
            else ($colour | tostring) + " / " + ($size | tostring) end)
       elif $article then $article
       elif $product then $product
       else "Article " + ($a.articleNumber | tostring)
       end) as $name
    | ($a.stockArticle == true and $s.products_track_stock == true) as $inventory
    | ($s.products_price == "excl") as $excl
    # The description's lines: the article's text, the product for a variant
    # (unless it is the category), the EAN.
    | ((if $n.extra then "\n" + ($n.extra | tostring)
        elif $n.invoice then "\n" + ($n.invoice | tostring)
        elif $article == null then "" else "\n" + ($article | tostring) end)
       + (if $variant and $product != null and $s.products_variant_parent != "category"
          then "\n" + ($product | tostring) else "" end)
       + (if $n.barcode == null then "" else "\nEAN " + ($n.barcode | tostring) end)
       | if . == "" then null else ltrimstr("\n") end) as $description
    | (gw_lookup($s.products_income_accounts; $tg)
       | if . then . else gw_lookup($s.income_account_by_country; "*") end) as $income
    | gw_lookup($s.products_expense_accounts; $tg) as $expense
    | ($a.vatCode | if . == null then "" else tostring end) as $vat
    | ($s.sales_tax_codes | if .["*/" + $vat] then .["*/" + $vat] else .[$vat] end) as $taxcode
    | {
        Name: $name,
        Sku: ($a.articleNumber | tostring),
        Type: (if $inventory then "Inventory" else "NonInventory" end),
        Description: ($description | gw_trunc(4000)),
        PurchaseDesc: ($article | gw_trunc(1000)),
        UnitPrice: (if $excl then $a.priceExcl else $a.priceIncl end),
        SalesTaxIncluded: ($excl | not),
        PurchaseCost: $a.purchasePrice,
        SalesTaxCodeRef: (if $taxcode then {value: $taxcode} else null end),
        IncomeAccountRef: (if $income then {value: $income} else null end),
        ExpenseAccountRef: (if $expense then {value: $expense} else null end),
        SubItem: (if $src.category then true else null end),
        ParentRef: (if $src.category then {value: $src.category} else null end),
        Active: ($a.active != false and $a.discontinued != true)
      }
      + (if $inventory then {
        AssetAccountRef: (gw_lookup($s.products_asset_accounts; $tg) as $v
                          | if $v then {value: $v} else null end),
        TrackQtyOnHand: true,
        QtyOnHand: "0",
        InvStartDate: (($s.products_inventory_start | gw_nonempty) // (now | strftime("%Y-%m-%d")))
      } else {} end)
  end
