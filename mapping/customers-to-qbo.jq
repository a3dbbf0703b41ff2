# Mplus relation -> QuickBooks Online Customer (the default mapping).
# Input: {source: relation, existing: customer or null, settings, connection}.
# A relation with a company name becomes a company customer with its contact
# as the person; otherwise a person. The single-string Mplus address fills
# the first address line. Fields in settings.customer_create_only are only
# set when the customer is created.
.source as $r | .settings as $s
| (($r.country | gw_country) // ($s.default_country | gw_nonempty)) as $country
| ($r.companyName | gw_clean) as $company
| ((if $company then $r.contact else $r.name end) | gw_clean | gw_split_name) as $person
| {
    DisplayName: (($company // ($r.name | gw_clean) // ($r.email | gw_nonempty)) | gw_trunc(500)),
    CompanyName: ($company | gw_trunc(100)),
    GivenName: ($person.given | gw_trunc(100)),
    FamilyName: ($person.family | gw_trunc(100)),
    PrimaryEmailAddr: (($r.email | gw_nonempty) as $e | if $e then {Address: ($e | gw_trunc(100))} else null end),
    PrimaryPhone: (($r.telephone | gw_nonempty) as $p | if $p then {FreeFormNumber: ($p | gw_trunc(30))} else null end),
    Mobile: (($r.mobile | gw_nonempty) as $p | if $p then {FreeFormNumber: ($p | gw_trunc(30))} else null end),
    WebAddr: (($r.website | gw_nonempty) as $w | if $w then {URI: ($w | gw_trunc(1000))} else null end),
    BillAddr: {
      Line1: ($r.address | gw_nonempty | gw_trunc(500)),
      City: ($r.city | gw_nonempty | gw_trunc(255)),
      PostalCode: ($r.zipcode | gw_nonempty | gw_trunc(30)),
      Country: $country
    },
    Active: ($r.active != false),
    DefaultTaxCodeRef: (gw_lookup($s.tax_code_by_country; $country) as $t | if $t then {value: $t} else null end)
  }
