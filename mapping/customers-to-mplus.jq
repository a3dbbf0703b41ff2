# QuickBooks Online Customer -> Mplus relation (the default mapping).
# Input: {source: customer, existing: relation or null, settings, connection}.
# The customer's Id goes to extRelationId, so the relation can be found
# again. Fields in settings.relation_create_only are only set on create.
# QuickBooks renames a customer it makes inactive to "Name (deleted)": the
# relation keeps the name.
.source as $c | .settings as $s
| ($c.DisplayName | gw_nonempty
   | if . != null and $c.Active == false and endswith(" (deleted)") then .[0:-10] | gw_nonempty else . end
  ) as $shown
| ([$c.GivenName, $c.FamilyName] | map(gw_nonempty) | map(select(. != null)) | join(" ") | gw_nonempty) as $person
| ($c.CompanyName | gw_nonempty) as $company
| ($c.BillAddr // {}) as $a
| {
    extRelationId: ($c.Id | gw_nonempty),
    name: ($shown // $company // $person),
    companyName: $company,
    contact: (if $company then $person else null end),
    email: ($c.PrimaryEmailAddr.Address | gw_nonempty),
    telephone: ($c.PrimaryPhone.FreeFormNumber | gw_nonempty),
    mobile: ($c.Mobile.FreeFormNumber | gw_nonempty),
    website: ($c.WebAddr.URI | gw_nonempty),
    address: ([$a.Line1, $a.Line2] | map(gw_nonempty) | map(select(. != null)) | join(" ") | gw_nonempty),
    zipcode: ($a.PostalCode | gw_nonempty),
    city: ($a.City | gw_nonempty),
    country: (($a.Country | gw_country) // ($s.default_country | gw_nonempty)),
    active: ($c.Active != false)
  }
