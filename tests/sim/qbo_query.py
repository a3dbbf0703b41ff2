"""qbo_query - the subset of the QuickBooks Online query language the simulator runs.

    SELECT * | COUNT(*) FROM Entity
      [WHERE cond [AND cond ...]]
      [ORDERBY Field [ASC|DESC] [, ...]]
      [STARTPOSITION n] [MAXRESULTS n]

    cond := Field (= | < | > | <= | >=) value
          | Field LIKE 'text with % wildcards'
          | Field IN (value [, value ...])
    value := 'string' | number | true | false

As in QBO: keywords and entity names are case-insensitive, there is no OR,
string literals escape a quote or backslash with a backslash ('Amy\\'s'), an
unescaped quote ends the literal so the rest fails to parse (fault 4000,
QueryParserError), and typographic quotes or dashes are a lexical error even
inside a literal (reported by integrators: quickbooks-ruby#309, PHP SDK #397).
Field paths use dots (PrimaryEmailAddr.Address, MetaData.LastUpdatedTime).

String comparison: '=' and IN compare a text field with a string literal as
text (Sku '01' is not '1'), case-sensitively unless the caller asks
otherwise (real QBO differs by field, so a test can prove the gateway does not
lean on case-insensitive matching); LIKE is case-insensitive, and <, >, <=,
>= and ORDERBY compare text ignoring case.
"""

import datetime
import decimal
import re

MAX_RESULTS_CAP = 1000     # QBO serves at most 1000 rows per page
DEFAULT_MAX_RESULTS = 100  # page size when MAXRESULTS is omitted

# Characters QBO's lexer rejects: curly quotes, en/em dash.
LEXICAL_ERRORS = "\u2018\u2019\u201c\u201d\u2013\u2014"

KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "ORDERBY", "ORDER", "BY", "ASC", "DESC",
            "STARTPOSITION", "MAXRESULTS", "LIKE", "IN", "COUNT", "TRUE", "FALSE"}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op><=|>=|=|<|>)
  | (?P<punct>[*(),])
""", re.VERBOSE)


class QueryError(Exception):
    """A query QBO would refuse: code "4000" (parse) or "4001" (validation)."""

    def __init__(self, code, message, detail):
        super().__init__(detail)
        self.code, self.message, self.detail = code, message, detail


def _parse_error(detail):
    return QueryError("4000", "Error parsing query", "QueryParserError: " + detail)


def validation_error(detail):
    return QueryError("4001", "Invalid query", "QueryValidationError: " + detail)


class Token:
    def __init__(self, kind, text, value, column):
        self.kind, self.text, self.value, self.column = kind, text, value, column

    def is_kw(self, *words):
        return self.kind == "ident" and self.text.upper() in words


def tokenize(text):
    """Tokens of a statement; raises QueryError on a lexical error."""
    for i, ch in enumerate(text):
        if ch in LEXICAL_ERRORS:
            raise _parse_error("Lexical error at line 1, column %d.  Encountered: \"\\u%04x\" (%d), after : \"\""
                               % (i + 1, ord(ch), ord(ch)))
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos] == "'":
            start, pos, chars = pos, pos + 1, []
            while True:
                if pos >= len(text):
                    raise _parse_error("Lexical error at line 1, column %d.  Encountered: <EOF> after : \"%s\""
                                       % (len(text) + 1, text[start:]))
                ch = text[pos]
                if ch == "\\" and pos + 1 < len(text):
                    chars.append(text[pos + 1])
                    pos += 2
                elif ch == "'":
                    pos += 1
                    break
                else:
                    chars.append(ch)
                    pos += 1
            tokens.append(Token("string", text[start:pos], "".join(chars), start + 1))
            continue
        m = _TOKEN.match(text, pos)
        if not m:
            raise _parse_error("Lexical error at line 1, column %d.  Encountered: \"%s\""
                               % (pos + 1, text[pos]))
        kind = m.lastgroup
        if kind != "ws":
            raw = m.group()
            value = decimal.Decimal(raw) if kind == "number" else raw
            tokens.append(Token(kind, raw, value, pos + 1))
        pos = m.end()
    tokens.append(Token("eof", "<EOF>", None, len(text) + 1))
    return tokens


class Query:
    """A parsed statement."""

    def __init__(self):
        self.count = False
        self.entity = None
        self.conditions = []   # (field, op, value or list of values)
        self.order = []        # (field, descending)
        self.start = 1
        self.max_results = DEFAULT_MAX_RESULTS


class _Parser:
    def __init__(self, text):
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self):
        return self.tokens[self.i]

    def take(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, expected):
        tok = self.tok
        kind = "<EOF>" if tok.kind == "eof" else tok.kind.upper()
        raise _parse_error('Encountered " "%s" "%s "" at line 1, column %d.\nWas expecting:\n    %s ...\n    '
                           % (tok.text, kind, tok.column, expected))

    def keyword(self, word):
        if not self.tok.is_kw(word):
            self.fail('"%s"' % word)
        self.take()

    def identifier(self):
        if self.tok.kind != "ident" or self.tok.text.upper() in KEYWORDS:
            self.fail("<IDENTIFIER>")
        return self.take().text

    def punct(self, ch):
        if self.tok.text != ch:
            self.fail('"%s"' % ch)
        self.take()

    def integer(self):
        tok = self.tok
        if tok.kind != "number" or tok.value != tok.value.to_integral_value():
            self.fail("<INTEGER>")
        self.take()
        return int(tok.value)

    def value(self):
        tok = self.tok
        if tok.kind in ("string", "number"):
            return self.take().value
        if tok.is_kw("TRUE", "FALSE"):
            return self.take().text.upper() == "TRUE"
        self.fail("<STRING_LITERAL>")

    def parse(self):
        q = Query()
        self.keyword("SELECT")
        if self.tok.text == "*":
            self.take()
        elif self.tok.is_kw("COUNT"):
            self.take()
            self.punct("(")
            self.punct("*")
            self.punct(")")
            q.count = True
        else:
            self.fail('"*"')
        self.keyword("FROM")
        q.entity = self.identifier()
        if self.tok.is_kw("WHERE"):
            self.take()
            q.conditions.append(self.condition())
            while self.tok.is_kw("AND"):
                self.take()
                q.conditions.append(self.condition())
        if self.tok.is_kw("ORDERBY", "ORDER"):
            # QBO spells it ORDERBY; ORDER BY is accepted as well.
            if self.take().text.upper() == "ORDER":
                self.keyword("BY")
            q.order.append(self.ordering())
            while self.tok.text == ",":
                self.take()
                q.order.append(self.ordering())
        seen = set()
        while self.tok.is_kw("STARTPOSITION", "MAXRESULTS") and self.tok.text.upper() not in seen:
            word = self.take().text.upper()
            seen.add(word)
            n = self.integer()
            if n < 1:
                raise validation_error("value %d is too small. Min allowed value is 1" % n)
            if word == "STARTPOSITION":
                q.start = n
            else:
                q.max_results = min(n, MAX_RESULTS_CAP)
        if self.tok.kind != "eof":
            self.fail("<EOF>")
        return q

    def condition(self):
        field = self.identifier()
        if self.tok.kind == "op":
            return field, self.take().text, self.value()
        if self.tok.is_kw("LIKE"):
            self.take()
            if self.tok.kind != "string":
                self.fail("<STRING_LITERAL>")
            return field, "LIKE", self.take().value
        if self.tok.is_kw("IN"):
            self.take()
            self.punct("(")
            values = [self.value()]
            while self.tok.text == ",":
                self.take()
                values.append(self.value())
            self.punct(")")
            return field, "IN", values
        self.fail('"=" or "LIKE" or "IN"')

    def ordering(self):
        field = self.identifier()
        descending = False
        if self.tok.is_kw("ASC", "DESC"):
            descending = self.take().text.upper() == "DESC"
        return field, descending


def parse(text):
    """Parse a statement into a Query, or raise QueryError."""
    return _Parser(text.strip()).parse()


# ---- evaluation ---------------------------------------------------------------


def field_value(obj, path):
    """The comparable value of a dotted field path in an entity, or None.

    An object at the end of the path stands for its main scalar, as QBO allows
    'PrimaryEmailAddr = ...' and 'CustomerRef = '1''.
    """
    value = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        # QBO field names in queries are case-insensitive.
        key = next((k for k in value if k.lower() == part.lower()), None)
        if key is None:
            return None
        value = value[key]
    if isinstance(value, dict):
        for scalar in ("Address", "value", "FreeFormNumber", "URI"):
            if scalar in value:
                return value[scalar]
        return None
    return value


def _timestamp(text):
    try:
        stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    # A bare date compares as midnight UTC.
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.timezone.utc)


def _sort_key(value):
    """A key that orders numbers numerically, timestamps in time and text case-insensitively."""
    if value is None:
        return (0, "")
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, (int, float, decimal.Decimal)):
        return (2, decimal.Decimal(str(value)))
    text = str(value)
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return (2, decimal.Decimal(text))
    stamp = _timestamp(text) if re.match(r"\d{4}-\d\d-\d\d", text) else None
    if stamp:
        return (3, stamp)
    return (4, text.lower())


def _compare(actual, op, wanted, equals_case_sensitive=True):
    if actual is None:
        return False
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return op == "=" and str(actual).lower() == str(wanted).lower()
    if op == "=" and isinstance(actual, str) and isinstance(wanted, str):
        # A text field equals a string literal as text: Sku '01' is not '1'.
        return actual == wanted if equals_case_sensitive else actual.lower() == wanted.lower()
    a, w = _sort_key(actual), _sort_key(wanted)
    if a[0] != w[0]:
        # Mixed kinds (e.g. a number field against a quoted string): compare text.
        a, w = (4, str(actual).lower()), (4, str(wanted).lower())
    if op == "=" and a[0] == 4 and equals_case_sensitive:
        return str(actual) == str(wanted)
    return {"=": a == w, "<": a < w, ">": a > w, "<=": a <= w, ">=": a >= w}[op]


def _like(actual, pattern):
    if actual is None:
        return False
    regex = ".*".join(re.escape(part) for part in pattern.split("%"))
    return re.fullmatch(regex, str(actual), re.IGNORECASE | re.DOTALL) is not None


def matches(obj, conditions, equals_case_sensitive=True):
    for field, op, wanted in conditions:
        actual = field_value(obj, field)
        if op == "LIKE":
            ok = _like(actual, wanted)
        elif op == "IN":
            ok = any(_compare(actual, "=", w, equals_case_sensitive) for w in wanted)
        else:
            ok = _compare(actual, op, wanted, equals_case_sensitive)
        if not ok:
            return False
    return True


def run(query, objects, equals_case_sensitive=True):
    """Rows of one page: filter, order (Id by default), then STARTPOSITION/MAXRESULTS.

    Returns (page, total) where total counts all matching rows.
    """
    rows = [o for o in objects if matches(o, query.conditions, equals_case_sensitive)]
    order = query.order or [("Id", False)]
    for field, descending in reversed(order):
        rows.sort(key=lambda o: _sort_key(field_value(o, field)), reverse=descending)
    return rows[query.start - 1:query.start - 1 + query.max_results], len(rows)
