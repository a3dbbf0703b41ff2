# Mplus article -> QuickBooks Online Item (the default mapping).
#
# Input: {source, existing, settings, connection}, where source holds
#   article    the Mplus article as polled (money as decimal text)
#   product    its product: productNumber, description, extraText, groupNumbers
#   category   the QuickBooks Category Item Id of the product's first article
#              group, or null (products_categories off, or no group); for a
#              variant with products_variant_parent = category, its product's
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
.source as $src | $src.article as $a | ($src.product // {}) as $p | .settings as $s
| ([$p.groupNumbers[]? | tostring]) as $groups
| ($a.turnoverGroup | if . == null then null else tostring end) as $tg
| ($s.products_groups // []) as $only_groups
| ($s.products_exclude_groups // []) as $no_groups
| ($s.products_turnover_groups // []) as $only_tg
| if $s.products_only_active and ($a.active == false or $a.discontinued == true) then
    {gw_skip: "inactive article (products_only_active)"}
  elif $s.products_only_webshop and ($a.webshop != true) then
    {gw_skip: "not a webshop article (products_only_webshop)"}
  elif ($only_groups | length) > 0 and (any($groups[] as $g | $only_groups[] | . == $g; .) | not) then
    {gw_skip: "article group not in products_groups"}
  elif any($groups[] as $g | $no_groups[] | . == $g; .) then
    {gw_skip: "article group in products_exclude_groups"}
  elif ($only_tg | length) > 0 and (any($only_tg[]; . == $tg) | not) then
    {gw_skip: "turnover group not in products_turnover_groups"}
  else
    ($p.description | gw_clean) as $product
    | ($a.description | gw_clean) as $article
    | ([$a.colour, $a.size] | map(gw_clean) | map(select(. != null))) as $variant
    | (if ($variant | length) > 0 then
         ($product // $article // "Article") + " – " + ($variant | join(" / "))
       else
         $article // $product // ("Article " + ($a.articleNumber | tostring))
       end) as $name
    | ($a.stockArticle == true and $s.products_track_stock == true) as $inventory
    | ($s.products_price == "excl") as $excl
    # (Its parts are trimmed already: only an empty whole becomes null.)
    | ([($a.extraText | gw_nonempty) // ($a.invoiceText | gw_nonempty) // $article,
        (if ($variant | length) > 0 and $product != null
            and $s.products_variant_parent != "category" then $product else null end),
        (($a.barcode | gw_nonempty) as $ean | if $ean then "EAN " + $ean else null end)]
       | map(select(. != null)) | join("\n") | if . == "" then null else . end) as $description
    | (gw_lookup($s.products_income_accounts; $tg) // gw_lookup($s.income_account_by_country; "*")) as $income
    | (gw_lookup($s.products_expense_accounts; $tg)) as $expense
    | ($a.vatCode | if . == null then null else tostring end) as $vat
    | (($s.sales_tax_codes // {}) as $t | $t["*/" + ($vat // "")] // $t[$vat // ""]) as $taxcode
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
        AssetAccountRef: (if $inventory then (gw_lookup($s.products_asset_accounts; $tg) as $v
                            | if $v then {value: $v} else null end) else null end),
        TrackQtyOnHand: (if $inventory then true else null end),
        QtyOnHand: (if $inventory then "0" else null end),
        InvStartDate: (if $inventory then (($s.products_inventory_start | gw_nonempty)
                                           // (now | strftime("%Y-%m-%d"))) else null end),
        SubItem: (if $src.category then true else null end),
        ParentRef: (if $src.category then {value: $src.category} else null end),
        Active: ($a.active != false and $a.discontinued != true)
      }
  end
