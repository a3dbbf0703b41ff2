"""qbo_schema - the property names QuickBooks Online accepts, read from Intuit's XSD.

QBO's JSON API is a Jackson mapping of the same classes the XSD generates, so
a JSON object may only carry the XSD element and attribute names of its type
(and those of its base types).  Anything else is answered with fault 2010
"Request has invalid or unsupported property".  This module reads the schema
in tests/fixtures/quickbooks/xsd/ once (xml.etree, no third-party parser) and
answers three questions: which entities exist, which keys a given type
allows (with the type of each key, so nested objects can be checked too),
and which values an enumeration such as ItemTypeEnum has.
"""

import functools
import glob
import os
import xml.etree.ElementTree as ET

XS = "{http://www.w3.org/2001/XMLSchema}"
XSD_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "..", "fixtures", "quickbooks", "xsd"))

# Keys the JSON binding adds on top of the schema, or that the schema declares
# only on the base type but every entity echoes back.
JSON_ONLY_KEYS = frozenset({"sparse", "domain", "SyncToken", "Id", "MetaData", "status"})


class TypeInfo:
    """The keys a complex type allows: name -> type name (None for simple types)."""

    def __init__(self, name, fields, is_open):
        self.name = name
        self.fields = fields      # dict: key -> complex type name or None
        self.is_open = is_open    # xs:any somewhere: anything goes, do not check


class Schema:
    """Intuit's v3 schema reduced to what the simulator validates against."""

    def __init__(self, xsd_dir=XSD_DIR):
        self._types = {}    # complexType name -> xml element
        self._groups = {}   # group name -> xml element
        self.entities = {}  # entity (IntuitObject substitution) name -> type name
        self.enums = {}     # simpleType name -> its enumeration values, in schema order
        for path in sorted(glob.glob(os.path.join(xsd_dir, "*.xsd"))):
            root = ET.parse(path).getroot()
            for node in root.findall(XS + "complexType"):
                self._types[node.get("name")] = node
            for node in root.findall(XS + "simpleType"):
                values = [e.get("value") for e in node.iter(XS + "enumeration")]
                if values:
                    self.enums[node.get("name")] = values
            for node in root.findall(XS + "group"):
                self._groups[node.get("name")] = node
            for node in root.findall(XS + "element"):
                if node.get("substitutionGroup") == "IntuitObject":
                    self.entities[node.get("name")] = _local(node.get("type"))

    def entity_by_lower(self, name):
        """Canonical entity name for a URL segment such as 'salesreceipt', or None."""
        lowered = name.lower()
        for entity in self.entities:
            if entity.lower() == lowered:
                return entity
        return None

    def base_chain(self, type_name):
        """type_name and its base types, nearest first (['Invoice', 'SalesTransaction', ...])."""
        chain = []
        while type_name in self._types:
            chain.append(type_name)
            ext = self._types[type_name].find(".//" + XS + "extension")
            type_name = _local(ext.get("base")) if ext is not None else None
        return chain

    @functools.lru_cache(maxsize=None)
    def type_info(self, type_name):
        """TypeInfo of a named complex type, or None when the schema has no such type."""
        node = self._types.get(type_name)
        if node is None:
            return None
        fields, is_open = {}, False
        content = node.find(XS + "complexContent")
        simple = node.find(XS + "simpleContent")
        if content is not None or simple is not None:
            derivation = (content if content is not None else simple)[0]
            base = _local(derivation.get("base"))
            base_info = self.type_info(base)
            if base_info is not None:
                fields.update(base_info.fields)
                is_open = base_info.is_open
            if simple is not None:
                # JSON carries an element's text content as "value" ({"value":"1","name":"x"}).
                fields["value"] = None
            is_open |= self._collect(derivation, fields)
        else:
            is_open = self._collect(node, fields)
        return TypeInfo(type_name, fields, is_open)

    def _collect(self, node, fields):
        """Add the elements/attributes under node (sequence, choice, group refs) to fields.

        Returns True when an xs:any makes the type open.
        """
        is_open = False
        for child in node:
            tag = child.tag
            if tag == XS + "element":
                type_name = _local(child.get("type")) if child.get("type") else None
                fields[child.get("name")] = type_name if type_name in self._types else None
            elif tag == XS + "attribute":
                fields[child.get("name")] = None
            elif tag == XS + "any":
                is_open = True
            elif tag == XS + "group" and child.get("ref"):
                is_open |= self._collect(self._groups[_local(child.get("ref"))], fields)
            elif tag in (XS + "sequence", XS + "choice", XS + "all", XS + "group"):
                is_open |= self._collect(child, fields)
        return is_open

    def unknown_property(self, type_name, obj, top_level=True):
        """First key of obj (recursively) that type_name does not allow.

        Returns (offending key, type name it was found in) or None.  Nested
        dicts and lists of dicts are checked when the schema knows their type.
        """
        info = self.type_info(type_name)
        if info is None or info.is_open or not isinstance(obj, dict):
            return None
        for key, value in obj.items():
            if key not in info.fields:
                if top_level and key in JSON_ONLY_KEYS:
                    continue
                return key, type_name
            child_type = info.fields[key]
            if child_type is None:
                continue
            for item in value if isinstance(value, list) else [value]:
                found = self.unknown_property(child_type, item, top_level=False)
                if found:
                    return found
        return None

    def known_properties(self, type_name):
        """The allowed keys of a type, for the 2010 fault's Detail text."""
        info = self.type_info(type_name)
        return sorted(info.fields) if info else []


def _local(qname):
    """'xs:string' -> 'string', 'Line' -> 'Line'."""
    return qname.split(":", 1)[-1] if qname else qname


@functools.lru_cache(maxsize=1)
def load():
    """The schema, parsed once per process."""
    return Schema()
