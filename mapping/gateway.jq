# gateway.jq - functions every mapping can use (each program includes this
# library). Names start with gw_ so they never clash with a user's own.

# Whether a string may need trimming or cleaning, decided with a few cheap
# builtins (jq 1.6 pays about a thousand instructions per operation, and
# compiles a regular expression at each call): it may start with white space
# (`. < "!"`), ends with a space, holds a character JSON escapes (a control
# character, a quote, a backslash), or starts or ends with a non-ASCII
# character (tested only when there is one: utf8bytelength counts its bytes).
# A "maybe" then goes the full way, which decides.
def gw_maybe_untrimmed:
  . < "!" or endswith(" ") or (tojson | contains("\\"))
  or (utf8bytelength != length and (. >= "\u0080" or .[-1:] >= "\u0080"));

# A trimmed string, or null when there is nothing in it. (An empty string,
# common in Mplus's answers, is seen first.)
def gw_nonempty:
  if type == "string" then
    (if . == "" then null
     elif gw_maybe_untrimmed then
       sub("^\\s+"; "") | sub("\\s+$"; "") | (if . == "" then null else . end)
     else . end)
  elif type == "number" then tostring
  else null end;

# Cut a string to at most $n characters (QuickBooks field limits).
def gw_trunc($n): if type == "string" and length > $n then .[0:$n] else . end;

# A name QuickBooks accepts: no ':', '"', tabs or line breaks, single spaces,
# trimmed. (Most names need no change: only those that may are rewritten.)
def gw_clean:
  if type == "string" then
    (if . == "" then null
     elif contains(":") or contains("  ") or gw_maybe_untrimmed then
       explode | map(select(. != 58 and . != 34) | if . == 9 or . == 10 or . == 13 then 32 else . end)
       | implode | split(" ") | map(select(. != "")) | join(" ") | gw_nonempty
     else . end)
  else . end;

# Drop members that are null (and objects left empty by that).
# (The gateway drops them from a mapping's output itself; this is for values
# a program goes on working with. A reduce: with_entries is several times slower.)
def gw_compact:
  if type == "object" then
    . as $o
    | reduce keys_unsorted[] as $k ({}; ($o[$k] | gw_compact) as $v
        | if $v == null or $v == {} then . else .[$k] = $v end)
  else . end;

# A value from a table of settings ({"NL": "3", "*": "0"}): by key, else "*".
def gw_lookup($table; $key):
  if $table == null then null
  elif $key != null and ($table | has($key)) then $table[$key]
  elif $table | has("*") then $table["*"]
  else null end;

# Country names and codes as Mplus and shops write them, to ISO 3166 alpha-2.
def gw_country:
  (gw_nonempty // "") as $c | ($c | ascii_upcase) as $u
  | {
      "NL": "NL", "NLD": "NL", "NEDERLAND": "NL", "NETHERLANDS": "NL", "THE NETHERLANDS": "NL", "HOLLAND": "NL",
      "BE": "BE", "BEL": "BE", "BELGIE": "BE", "BELGIË": "BE", "BELGIUM": "BE", "BELGIQUE": "BE",
      "DE": "DE", "DEU": "DE", "DUITSLAND": "DE", "GERMANY": "DE", "DEUTSCHLAND": "DE",
      "FR": "FR", "FRA": "FR", "FRANKRIJK": "FR", "FRANCE": "FR",
      "GB": "GB", "GBR": "GB", "UK": "GB", "UNITED KINGDOM": "GB", "VERENIGD KONINKRIJK": "GB", "ENGLAND": "GB",
      "US": "US", "USA": "US", "UNITED STATES": "US", "VERENIGDE STATEN": "US",
      "LU": "LU", "LUX": "LU", "LUXEMBURG": "LU", "LUXEMBOURG": "LU",
      "ES": "ES", "ESP": "ES", "SPANJE": "ES", "SPAIN": "ES",
      "IT": "IT", "ITA": "IT", "ITALIE": "IT", "ITALIË": "IT", "ITALY": "IT",
      "AT": "AT", "AUT": "AT", "OOSTENRIJK": "AT", "AUSTRIA": "AT",
      "DK": "DK", "DNK": "DK", "DENEMARKEN": "DK", "DENMARK": "DK",
      "CA": "CA", "CAN": "CA", "CANADA": "CA", "AU": "AU", "AUS": "AU", "AUSTRALIA": "AU"
    }[$u] // (if $c == "" then null elif ($c | length) == 2 then $u else $c end);

# "Jan de Vries" -> {given: "Jan", family: "de Vries"}; one word is a family name.
def gw_split_name:
  (gw_nonempty // "") | split(" ") | map(select(. != ""))
  | if length == 0 then {given: null, family: null}
    elif length == 1 then {given: null, family: .[0]}
    else {given: .[0], family: (.[1:] | join(" "))} end;

# A money amount as a decimal string with two places ("9.5" -> "9.50");
# amounts arrive as exact decimal strings and stay text (no floating point).
def gw_money:
  if . == null then null
  else tostring | capture("^(?<sign>-?)(?<int>[0-9]+)(\\.(?<frac>[0-9]*))?$")
       | .sign + .int + "." + (((.frac // "") + "00")[0:2]) end;
