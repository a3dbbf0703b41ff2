# QuickBooks Online Item -> Mplus article (the default mapping, used with
# products_direction = both).
#
# Input: {source, existing, settings, connection}, where
#   source    an Item: as QuickBooks holds it now, or as the gateway last
#             wrote it (the products mapping's fields)
#   existing  {article, product}: the Mplus article as it is now (money as
#             decimal text) and its product; null when the gateway first asks
#             whether anything it maps changed at all
# Returns the article fields the Item sets. Leave a field out (null) when the
# article already says the same in its own form: the gateway compares the
# rest with the article as it is.
#
# The gateway writes a field only when the Item's differs both from what the
# gateway last wrote to the Item (mapped by this same program) and from the
# article: a field the accountant did not change in QuickBooks is never sent
# back, and the gateway's own writes coming back end skipped, "echo".
#
# What goes back by default: the sales price (UnitPrice into priceIncl, or
# priceExcl when the Item's price is without VAT), the purchase price, the
# article's description from the Item's Name (not for a variant, whose Name
# is made of its product, colour and size; a Name the gateway gave the
# suffix " (article number)" or cut at 100 characters means the article's
# own), and the Item's Description, without the lines the products mapping
# adds (the product's name of a variant, "EAN ..."), into the text it came
# from (extraText, else invoiceText). Prices are rounded to the cent.
#
# Add a field of your own the same way, e.g. the Item's active state:
#     + {active: $i.Active}

# An Item amount (a number) as Mplus's decimal text, rounded to the cent
# (half away from zero) on its decimal digits: Mplus keeps prices in cents.
def gw_price:
  if . == null then null
  else tostring
  | if test("^-?[0-9]+(\\.[0-9]*)?$") | not then .
    else capture("^(?<sign>-?)(?<int>[0-9]+)(\\.(?<frac>[0-9]*))?$")
    | ((.frac // "") + "000") as $f
    | ((.int | tonumber) * 100 + ($f[0:2] | tonumber)
       + (if ($f[2:3] | tonumber) >= 5 then 1 else 0 end)) as $c
    | .sign + (($c / 100 | floor) | tostring) + "."
      + ($c % 100 | tostring | if length < 2 then "0" + . else . end)
    end
  end;

.source as $i | .existing.article as $a | .existing.product as $p | .settings as $s
| ($a.articleNumber | if . == null then null else tostring end) as $number
| ($a.colour | gw_clean) as $colour | ($a.size | gw_clean) as $size
| ($colour != null or $size != null) as $variant
| (if $i.SalesTaxIncluded == null then $s.products_price == "excl"
   else $i.SalesTaxIncluded == false end) as $excl
| ($a.barcode | gw_nonempty) as $ean
| ($p.description | gw_clean) as $product
| ($a.description | gw_clean) as $own
# The Name as the article's description: without " (number)", and none when
# the article says the same (or the Name is its description cut at 100).
| ($i.Name | if type != "string" then null
             elif $number != null then rtrimstr(" (" + $number + ")") else . end) as $name
| (if $name == null or $variant then null
   elif $own != null and ($own == $name or (($own | length) > 100 and $own[0:100] == $name))
   then null
   else $name end) as $description
# The Description without the lines the products mapping adds.
| ($i.Description | if type != "string" then null else . end
   | if . == null or $ean == null then .
     elif . == "EAN " + $ean then ""
     else rtrimstr("\nEAN " + $ean) end
   | if . == null or ($variant | not) or $product == null
        or $s.products_variant_parent == "category" then .
     elif . == $product then ""
     else rtrimstr("\n" + $product) end
   | gw_nonempty) as $text
| ($a.extraText | gw_nonempty) as $extra | ($a.invoiceText | gw_nonempty) as $invoice
| {
    priceIncl: (if $excl then null else $i.UnitPrice | gw_price end),
    priceExcl: (if $excl then $i.UnitPrice | gw_price else null end),
    purchasePrice: ($i.PurchaseCost | gw_price),
    description: $description
  }
  + (if $text == null then {}
     elif $extra != null then {extraText: (if $text == $extra then null else $text end)}
     elif $invoice != null then {invoiceText: (if $text == $invoice then null else $text end)}
     elif $text == $own then {}
     else {extraText: $text} end)
