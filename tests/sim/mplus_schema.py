"""mplus_schema - the MplusKASSA SOAP schema (urn:mplusqapi) for the simulator.

Reads tests/fixtures/mplus/mplusqapi.xsd (the <xsd:schema> of the official
WSDL) and mplusqapi.wsdl, and offers:

- ``validate(element)``: lxml XML Schema validation of one SOAP body element,
  returning the errors (line and message) the way a fault should name them;
- ``operations``: operation name -> (request element, response element), from
  the WSDL's portType and messages;
- ``build(parent, type, data)``: writes a dict as namespace-qualified child
  elements in the exact order of the schema's sequence, filling defaults for
  required elements that the dict leaves out;
- ``read(element, type)``: the reverse, an element as a dict (ints, bools,
  Decimals, lists for repeated elements);
- ``normalize(type, value)``: control-API JSON to the same dict form, with
  shorthands (a list for a list wrapper, a scalar for a one-field type, an
  ISO string for SoapMplusDate/SoapMplusDateTime).

Data dicts use the schema's element names as keys; a repeated element is a
list; a nested complex type is a dict.  Type keys are the complexType names
("Product"), or "#name" for the inline type of a top-level element
("#getProducts").  Needs Debian's python3-lxml.
"""

import datetime
import decimal
import os
import zoneinfo

from lxml import etree

URN = "urn:mplusqapi"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSD = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
FIXTURES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "..", "fixtures", "mplus"))
XSD_PATH = os.path.join(FIXTURES, "mplusqapi.xsd")
WSDL_PATH = os.path.join(FIXTURES, "mplusqapi.wsdl")

# Mplus servers run on Dutch wall-clock time (SoapMplusDateTime carries the offset).
TZ = zoneinfo.ZoneInfo("Europe/Amsterdam")
INT_TYPES = {"int", "long", "short", "unsignedByte", "unsignedInt", "unsignedLong", "unsignedShort"}
_Q = "{%s}" % URN


class SchemaError(ValueError):
    """Data that does not fit the schema (bad control-API input, or a simulator bug)."""


class Field:
    __slots__ = ("name", "type", "builtin", "min", "many", "qname")

    def __init__(self, name, type_, builtin, min_, many):
        self.name, self.type, self.builtin, self.min, self.many = name, type_, builtin, min_, many
        self.qname = _Q + name

    def __repr__(self):
        return "Field(%s: %s%s)" % (self.name, self.type, "[]" if self.many else "")


def _local(qname):
    return qname.split(":", 1)[1] if qname and ":" in qname else qname


def _safe_parser():
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


class Schema:
    def __init__(self, xsd_path=XSD_PATH, wsdl_path=WSDL_PATH):
        doc = etree.parse(xsd_path, _safe_parser())
        self.xmlschema = etree.XMLSchema(doc)
        root = doc.getroot()
        self.complex = {}   # type key -> [Field]
        self.fieldmap = {}  # type key -> {name: Field}
        self.enums = {}     # simpleType name -> [values]
        self.elements = {}  # top-level element name -> type key
        for st in root.findall("{%s}simpleType" % XSD):
            self.enums[st.get("name")] = [e.get("value") for e in st.iter("{%s}enumeration" % XSD)]
        named = {ct.get("name"): ct for ct in root.findall("{%s}complexType" % XSD)}
        for name, ct in named.items():
            self.complex[name] = self._fields(ct, named)
        for el in root.findall("{%s}element" % XSD):
            name = el.get("name")
            if el.get("type"):
                self.elements[name] = _local(el.get("type"))
            else:
                key = "#" + name
                self.complex[key] = self._fields(el.find("{%s}complexType" % XSD), named)
                self.elements[name] = key
        for key, fields in self.complex.items():
            self.fieldmap[key] = {f.name: f for f in fields}
        self.operations = self._operations(wsdl_path)

    def _fields(self, ct, named):
        out = []
        ext = ct.find("{%s}complexContent/{%s}extension" % (XSD, XSD))
        if ext is not None:
            out.extend(self._fields(named[_local(ext.get("base"))], named))
            seq = ext.find("{%s}sequence" % XSD)
        else:
            seq = ct.find("{%s}sequence" % XSD)
        if seq is not None:
            for e in seq.findall("{%s}element" % XSD):
                t = e.get("type")
                builtin = t.startswith("xsd:")
                out.append(Field(e.get("name"), _local(t), builtin, int(e.get("minOccurs", "1")),
                                 e.get("maxOccurs", "1") == "unbounded"))
        return out

    @staticmethod
    def _operations(wsdl_path):
        root = etree.parse(wsdl_path, _safe_parser()).getroot()
        messages = {}
        for m in root.findall("{%s}message" % WSDL):
            part = m.find("{%s}part" % WSDL)
            messages[m.get("name")] = _local(part.get("element")) if part is not None else None
        ops = {}
        for op in root.find("{%s}portType" % WSDL).findall("{%s}operation" % WSDL):
            inp = op.find("{%s}input" % WSDL).get("message")
            out = op.find("{%s}output" % WSDL).get("message")
            ops[op.get("name")] = (messages[_local(inp)], messages[_local(out)])
        return ops

    # ---- validation ----------------------------------------------------------

    def validate(self, element):
        """[] when the element is valid, else [(line, message), ...] from libxml2."""
        if self.xmlschema.validate(element):
            return []
        return [(e.line, e.message) for e in self.xmlschema.error_log]

    def is_simple(self, field):
        return field.builtin or field.type in self.enums

    # ---- dict -> XML -------------------------------------------------------

    def element(self, name, data, nsmap=None):
        """A new top-level element <ns:name> with data written as its children."""
        el = etree.Element(_Q + name, nsmap=nsmap or {"ns": URN})
        self.build(el, self.elements[name], data)
        return el

    def build(self, parent, tkey, data):
        """Append data (a dict) to parent as the children of complex type tkey."""
        if data is None:
            data = {}
        fields = self.complex[tkey]
        if len(data) > 0:
            unknown = set(data) - set(self.fieldmap[tkey])
            if unknown:
                raise SchemaError("%s has no element(s) %s" % (tkey, ", ".join(sorted(unknown))))
        sub = etree.SubElement
        for f in fields:
            v = data.get(f.name)
            if v is None or (f.many and v == []):
                if f.min == 0:
                    continue
                v = self.default(f)
            if f.many:
                values = v if isinstance(v, list) else [v]
            else:
                values = (v,)
            simple = f.builtin or f.type in self.enums
            for item in values:
                child = sub(parent, f.qname)
                if simple:
                    child.text = self.text(f, item)
                else:
                    self.build(child, f.type, item)
        return parent

    def default(self, field):
        """The value written for a required element the data leaves out."""
        if field.builtin:
            if field.type in INT_TYPES:
                return 0
            if field.type == "boolean":
                return False
            if field.type == "decimal":
                return decimal.Decimal(0)
            if field.type == "date":
                return "1970-01-01"
            if field.type == "dateTime":
                return "1970-01-01T00:00:00Z"
            if field.type == "base64Binary":
                return ""
            return ""
        if field.type in self.enums:
            return self.enums[field.type][0]
        if field.type == "SoapMplusDateTime":   # a real instant, not year 0
            return mplus_datetime(datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc))
        if field.type == "SoapMplusDate":
            return mplus_date(datetime.date(1970, 1, 1))
        return {}

    @staticmethod
    def text(field, value):
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, decimal.Decimal):
            return format(value, "f")
        return str(value)

    # ---- XML -> dict -------------------------------------------------------

    def read(self, element, tkey):
        """A (validated) element's children as a dict of type tkey."""
        fields = self.fieldmap[tkey]
        out = {}
        for child in element:
            if not isinstance(child.tag, str):
                continue  # comments, processing instructions
            name = etree.QName(child).localname
            f = fields.get(name)
            if f is None:
                raise SchemaError("%s has no element %s" % (tkey, name))
            if f.builtin or f.type in self.enums:
                v = self.scalar(f, child.text or "")
            else:
                v = self.read(child, f.type)
            if f.many:
                out.setdefault(name, []).append(v)
            else:
                out[name] = v
        return out

    @staticmethod
    def scalar(field, text):
        t = field.type
        if field.builtin:
            text = text.strip() if t != "string" else text
            if t in INT_TYPES:
                return int(text)
            if t == "boolean":
                return text in ("true", "1")
            if t == "decimal":
                return decimal.Decimal(text)
        return text

    # ---- control-API JSON -> dict ----------------------------------------

    def normalize(self, tkey, value, path=""):
        """Control-API JSON (with shorthands) as a dict of type tkey; SchemaError on bad input."""
        fields = self.complex[tkey]
        if not isinstance(value, dict):
            if tkey == "SoapMplusDateTime" and isinstance(value, str):
                return mplus_datetime(parse_iso(value, path).astimezone(TZ))
            if tkey == "SoapMplusDate" and isinstance(value, str):
                return mplus_date(parse_date(value, path))
            if isinstance(value, list) and len(fields) == 1 and fields[0].many:
                value = {fields[0].name: value}
            elif (not isinstance(value, list) and len(fields) == 1 and not fields[0].many
                  and self.is_simple(fields[0])):
                value = {fields[0].name: value}
            else:
                raise SchemaError("%s: expected an object of type %s" % (path or "value", tkey))
        fmap = self.fieldmap[tkey]
        out = {}
        for k, v in value.items():
            f = fmap.get(k)
            where = "%s.%s" % (path, k) if path else k
            if f is None:
                raise SchemaError("%s: %s has no element %r" % (where, tkey, k))
            if v is None:
                continue
            if f.many:
                items = v if isinstance(v, list) else [v]
                out[k] = [self._norm_value(f, item, "%s[%d]" % (where, i)) for i, item in enumerate(items)]
            else:
                out[k] = self._norm_value(f, v, where)
        return out

    def _norm_value(self, f, v, where):
        if not self.is_simple(f):
            return self.normalize(f.type, v, where)
        if f.type in self.enums:
            if v not in self.enums[f.type]:
                raise SchemaError("%s: %r is not one of %s" % (where, v, ", ".join(self.enums[f.type])))
            return v
        t = f.type
        try:
            if t in INT_TYPES:
                if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                    raise ValueError
                return int(v)
            if t == "boolean":
                if not isinstance(v, bool):
                    raise ValueError
                return v
            if t == "decimal":
                return decimal.Decimal(str(v))
        except (ValueError, TypeError, decimal.InvalidOperation):
            raise SchemaError("%s: %r is not a valid %s" % (where, v, t))
        if not isinstance(v, str):
            raise SchemaError("%s: expected a string" % where)
        return v


# ---- Mplus dates ---------------------------------------------------------------


def parse_iso(text, path=""):
    try:
        stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SchemaError("%s: %r is not an ISO-8601 date-time" % (path or "value", text))
    if stamp.tzinfo is None:
        raise SchemaError("%s: %r has no UTC offset" % (path or "value", text))
    return stamp


def parse_date(text, path=""):
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise SchemaError("%s: %r is not an ISO-8601 date" % (path or "value", text))


def mplus_datetime(stamp):
    """SoapMplusDateTime of an aware datetime: wall clock fields plus the UTC offset in
    minutes (east positive, DST included) and isdst."""
    offset = stamp.utcoffset()
    dst = stamp.dst()
    return {"sec": stamp.second, "min": stamp.minute, "hour": stamp.hour, "day": stamp.day,
            "mon": stamp.month, "year": stamp.year, "isdst": bool(dst),
            "timezone": int(offset.total_seconds() // 60) if offset is not None else 0}


def mplus_date(day):
    return {"day": day.day, "mon": day.month, "year": day.year}


_SCHEMA = None


def load():
    """The schema, parsed once per process."""
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = Schema()
    return _SCHEMA
