"""qbo_company - the accounting side of the simulator: one QuickBooks company (realm).

Holds the entities of one realm and applies QBO's rules when they are
written: Ids and SyncTokens, sparse versus full updates, delete and void, the
unknown-property check against Intuit's schema (2010), unique display names
(6240), document numbers (6140), the line-amount rule of sales documents
(6070), queries and change data capture.  Every rule answers with the fault
shape of the real fixtures in tests/fixtures/quickbooks/.

Nothing here is thread-safe on its own: callers hold Company.lock.
"""

import copy
import datetime
import decimal
import json
import threading

import qbo_query

D = decimal.Decimal
CENT = D("0.01")

# QBO answers in the company's time zone (US Pacific in every recording).  A
# fixed offset keeps the simulator deterministic across DST changes.
SIM_TZ = datetime.timezone(datetime.timedelta(hours=-7))

# Customer, Vendor and Employee share one namespace of display names.
NAME_ENTITIES = ("Customer", "Vendor", "Employee")
# Name lists whose Name must be unique within their own type.
UNIQUE_NAME_ENTITIES = ("Item", "Account", "PaymentMethod", "Term", "Class", "Department")
# Characters QBO refuses in a display name or item name.
FORBIDDEN_NAME_CHARS = (":", "\t", "\n")
# Sales documents whose DocNumber must be unique per type.
DOC_NUMBER_UNIQUE = ("SalesReceipt", "Invoice", "CreditMemo", "RefundReceipt")
# Transactions that ?operation=void applies to.
VOIDABLE = ("SalesReceipt", "Invoice", "Payment")
# Sales documents that stay open for payment: Balance = TotalAmt.
OPEN_BALANCE = ("Invoice", "CreditMemo")
# Sales documents paid on the spot: Balance = 0.
PAID_ON_ISSUE = ("SalesReceipt", "RefundReceipt")
# Kept from the stored object on a full update: the server owns them.
SYSTEM_KEYS = ("Id", "domain", "Balance", "BalanceWithJobs", "status")
CDC_MAX_AGE = datetime.timedelta(days=30)
CDC_MAX_OBJECTS = 1000
USD = {"value": "USD", "name": "United States Dollar"}


# ---- time and JSON --------------------------------------------------------------


def now():
    return datetime.datetime.now(SIM_TZ)


def meta_time(stamp):
    """MetaData times carry whole seconds: 2020-09-29T05:58:07-07:00."""
    return stamp.astimezone(SIM_TZ).isoformat(timespec="seconds")


def response_time(stamp):
    """The "time" of a response carries milliseconds: 2020-09-29T05:59:22.019-07:00."""
    return stamp.astimezone(SIM_TZ).isoformat(timespec="milliseconds")


def parse_time(text):
    """An ISO-8601 timestamp as an aware datetime (UTC when it has no offset), or None."""
    try:
        stamp = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.timezone.utc)


def _json_default(value):
    if isinstance(value, D):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError("not JSON serialisable: %r" % (value,))


def dumps(obj):
    """Compact JSON bytes; Decimal amounts become JSON numbers."""
    return json.dumps(obj, default=_json_default, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data):
    """Parse a request body keeping amounts exact (floats as Decimal)."""
    return json.loads(data, parse_float=D)


# ---- faults -------------------------------------------------------------------------


class Fault(Exception):
    """A QBO error answer, sent with HTTP 400: {"Fault":{"Error":[...],"type":...},"time":...}."""

    def __init__(self, code, message, detail, element=None, fault_type="ValidationFault"):
        super().__init__("%s %s: %s" % (code, message, detail))
        self.code, self.message, self.detail = code, message, detail
        self.element, self.fault_type = element, fault_type

    def body(self, stamp):
        error = {"Message": self.message, "Detail": self.detail, "code": self.code}
        if self.element is not None:
            error["element"] = self.element
        return {"Fault": {"Error": [error], "type": self.fault_type}, "time": response_time(stamp)}


def required(element):
    # errors/fault_2020_required_param.json
    return Fault("2020", "Required param missing, need to supply the required value for the API",
                 "Required parameter %s is missing in the request" % element, element)


def not_found():
    # errors/fault_610_object_not_found.json
    return Fault("610", "Object Not Found",
                 "Object Not Found : Something you're trying to use has been made inactive. "
                 "Check the fields with accounts, customers, items, vendors or employees.", "")


def stale():
    # errors/fault_5010_stale_object.json
    return Fault("5010", "Stale Object Error",
                 "Stale Object Error : You and another user were working on this at the same time. "
                 "The other user finished before you did, so your work was not saved.", "")


def unsupported_operation(what):
    return Fault("500", "Unsupported Operation", "Operation %s is not supported." % what)


def malformed(detail):
    return Fault("2010", "Request has invalid or unsupported property",
                 "Property Name:%s specified is unsupported or invalid" % detail)


def _number(value, element):
    """An amount or quantity as Decimal; anything else is an invalid property (2010)."""
    try:
        return D(str(value))
    except decimal.InvalidOperation:
        raise malformed("%s=%r is not a number" % (element, value))


# ---- the company -------------------------------------------------------------------


class Company:
    """One realm: its entities, deleted transactions and idempotent request ids."""

    def __init__(self, realm, schema):
        self.realm = realm
        self.schema = schema
        self.lock = threading.RLock()
        self.objects = {}     # entity -> {Id: object}
        self.tombstones = {}  # entity -> {Id: {"Id", "deleted_at"}} for deleted transactions
        self.next_id = {}     # entity -> next Id number
        self.responses = {}   # requestid -> (HTTP status, body bytes) of the first answer
        # Apps commonly read companyinfo/{realm} to check a connection.
        stamp = meta_time(now())
        self.objects["CompanyInfo"] = {realm: {
            "CompanyName": "Simulated Company %s" % realm, "LegalName": "Simulated Company %s" % realm,
            "Country": "US", "domain": "QBO", "sparse": False, "Id": realm, "SyncToken": "0",
            "MetaData": {"CreateTime": stamp, "LastUpdatedTime": stamp}}}

    # -- entity traits from the schema --

    def _chain(self, entity):
        return self.schema.base_chain(self.schema.entities[entity])

    def is_transaction(self, entity):
        return "Transaction" in self._chain(entity)

    def _is_sales(self, entity):
        return "SalesTransaction" in self._chain(entity)

    def _has_field(self, entity, field):
        return field in self.schema.type_info(self.schema.entities[entity]).fields

    # -- reads --

    def read(self, entity, obj_id):
        obj = self.objects.get(entity, {}).get(str(obj_id))
        if obj is None:
            raise not_found()
        return copy.deepcopy(obj)

    def all(self, entity):
        """Every stored object of a type, deleted transactions as status Deleted (control API)."""
        rows = [copy.deepcopy(o) for o in self.objects.get(entity, {}).values()]
        rows += [self._tombstone_view(t) for t in self.tombstones.get(entity, {}).values()]
        return sorted(rows, key=lambda o: int(o["Id"]))

    def query(self, text):
        """The body of a query answer (without "time"); raises Fault."""
        try:
            q, entity = self._parse_query(text)
        except qbo_query.QueryError as e:
            raise Fault(e.code, e.message, e.detail)
        rows = list(self.objects.get(entity, {}).values())
        mentions_active = any(c[0].lower() == "active" for c in q.conditions)
        if self._has_field(entity, "Active") and not mentions_active:
            # Like QBO, a name list query returns active objects unless it asks about Active.
            rows = [r for r in rows if r.get("Active") is not False]
        page, total = qbo_query.run(q, rows)
        if q.count:
            return {"QueryResponse": {"totalCount": total}}
        if not page:
            return {"QueryResponse": {}}
        return {"QueryResponse": {entity: copy.deepcopy(page), "startPosition": q.start,
                                  "maxResults": len(page)}}

    def _parse_query(self, text):
        """(Query, entity name) of a statement whose entity and fields exist; raises QueryError."""
        q = qbo_query.parse(text)
        entity = self.schema.entity_by_lower(q.entity)
        if entity is None:
            raise qbo_query.validation_error("Entity %s is not supported" % q.entity)
        fields = {f.lower() for f in self.schema.type_info(self.schema.entities[entity]).fields}
        for field in [c[0] for c in q.conditions] + [o[0] for o in q.order]:
            if field.split(".")[0].lower() not in fields:
                raise qbo_query.validation_error("property '%s' is not queryable" % field)
        return q, entity

    def cdc(self, entity_names, changed_since, stamp):
        """The body of a CDC answer (without "time"); raises Fault."""
        since = parse_time(changed_since or "")
        if since is None:
            raise Fault("4001", "Invalid query", "QueryValidationError: changedSince is not a valid date-time: %s"
                        % (changed_since,))
        if since < stamp - CDC_MAX_AGE:
            raise Fault("4001", "Invalid query",
                        "QueryValidationError: changedSince must be within the last 30 days")
        entities = []
        for name in (entity_names or "").split(","):
            entity = self.schema.entity_by_lower(name.strip())
            if entity is None:
                raise Fault("4001", "Invalid query", "QueryValidationError: Entity %s is not supported" % name)
            entities.append(entity)
        responses, budget = [], CDC_MAX_OBJECTS
        for entity in entities:
            changed = [(parse_time(o["MetaData"]["LastUpdatedTime"]), copy.deepcopy(o))
                       for o in self.objects.get(entity, {}).values()]
            changed += [(t["deleted_at"].replace(microsecond=0), self._tombstone_view(t))
                        for t in self.tombstones.get(entity, {}).values()]
            # Timestamps have whole seconds, so compare at that resolution (inclusive).
            rows = [o for when, o in sorted(changed, key=lambda p: (p[0], int(p[1]["Id"])))
                    if when >= since.replace(microsecond=0)][:budget]
            budget -= len(rows)
            responses.append({entity: rows, "startPosition": 1, "maxResults": len(rows)} if rows else {})
        return {"CDCResponse": [{"QueryResponse": responses}]}

    def _tombstone_view(self, tomb):
        # Deleted objects come back with minimal fields (NangoHQ integration-templates PR #467).
        return {"domain": "QBO", "status": "Deleted", "Id": tomb["Id"],
                "MetaData": {"LastUpdatedTime": meta_time(tomb["deleted_at"])}}

    # -- writes: each returns (object or answer body entity, webhook operation) --

    def create(self, entity, body, stamp, validate=True, obj_id=None):
        if validate:
            self._check_properties(entity, body)
        obj = copy.deepcopy(body)
        for key in ("Id", "SyncToken", "MetaData", "status"):
            obj.pop(key, None)
        obj_id = obj_id or str(self._take_id(entity))
        obj.update({"domain": "QBO", "sparse": False, "Id": obj_id, "SyncToken": "0",
                    "MetaData": {"CreateTime": meta_time(stamp), "LastUpdatedTime": meta_time(stamp)}})
        self._derive(entity, obj, None, validate)
        self.objects.setdefault(entity, {})[obj_id] = obj
        return copy.deepcopy(obj), "Create"

    def update(self, entity, body, stamp):
        self._check_properties(entity, body)
        current = self._current_for_write(entity, body)
        if body.get("sparse") is True:
            obj = copy.deepcopy(current)
            obj.update(copy.deepcopy({k: v for k, v in body.items() if k not in ("MetaData", "status")}))
        else:
            # A full update replaces every writable field; what the server owns survives.
            obj = copy.deepcopy({k: v for k, v in body.items() if k not in ("MetaData", "status")})
            obj.update({k: copy.deepcopy(current[k]) for k in SYSTEM_KEYS if k in current})
        obj["sparse"] = False
        self._derive(entity, obj, current, validate=True)
        return self._store_version(entity, obj, current, stamp), "Update"

    def delete(self, entity, body, stamp):
        current = self._current_for_write(entity, body)
        if self.is_transaction(entity):
            del self.objects[entity][current["Id"]]
            self.tombstones.setdefault(entity, {})[current["Id"]] = {"Id": current["Id"], "deleted_at": stamp}
            return {"domain": "QBO", "status": "Deleted", "Id": current["Id"]}, "Delete"
        if not self._has_field(entity, "Active"):
            raise unsupported_operation("delete")
        obj = copy.deepcopy(current)
        obj["Active"] = False
        self._derive(entity, obj, current, validate=False)
        return self._store_version(entity, obj, current, stamp), "Delete"

    def void(self, entity, body, stamp):
        if entity not in VOIDABLE:
            raise unsupported_operation("void")
        current = self._current_for_write(entity, body)
        obj = copy.deepcopy(current)
        # rest/salesreceipt_void.json: amounts and quantities zeroed, PrivateNote "Voided".
        for line in obj.get("Line", []):
            line["Amount"] = 0
            detail = line.get("SalesItemLineDetail")
            if detail is not None:
                detail.update({k: 0 for k in ("Qty", "UnitPrice") if k in detail})
        obj["PrivateNote"] = "Voided"
        obj["TotalAmt"] = 0
        if "Balance" in obj:
            obj["Balance"] = 0
        if "TxnTaxDetail" in obj:
            obj["TxnTaxDetail"]["TotalTax"] = 0
        return self._store_version(entity, obj, current, stamp), "Void"

    def put_direct(self, entity, body, stamp):
        """A change made "in the QuickBooks UI" (control API): no SyncToken or property checks."""
        obj_id = str(body.get("Id", ""))
        current = self.objects.get(entity, {}).get(obj_id)
        if current is None:
            if obj_id:
                # Seed a chosen Id; later creates continue after it.
                self.next_id[entity] = max(self.next_id.get(entity, 1), int(obj_id) + 1)
            return self.create(entity, body, stamp, validate=False, obj_id=obj_id or None)
        obj = copy.deepcopy(current)
        obj.update({k: copy.deepcopy(v) for k, v in body.items() if k not in ("SyncToken", "MetaData")})
        self._derive(entity, obj, current, validate=False)
        return self._store_version(entity, obj, current, stamp), "Update"

    # -- write helpers --

    def _take_id(self, entity):
        n = self.next_id.get(entity, 1)
        self.next_id[entity] = n + 1
        return n

    def _current_for_write(self, entity, body):
        """The stored object an update/delete/void names, after the SyncToken check."""
        obj_id = body.get("Id")
        if obj_id in (None, ""):
            raise required("Id")
        current = self.objects.get(entity, {}).get(str(obj_id))
        if current is None:
            raise not_found()
        if body.get("SyncToken") in (None, ""):
            raise required("SyncToken")
        if str(body["SyncToken"]) != current["SyncToken"]:
            raise stale()
        return current

    def _store_version(self, entity, obj, current, stamp):
        obj["SyncToken"] = str(int(current["SyncToken"]) + 1)
        obj["MetaData"] = {"CreateTime": current["MetaData"]["CreateTime"], "LastUpdatedTime": meta_time(stamp)}
        self.objects[entity][obj["Id"]] = obj
        return copy.deepcopy(obj)

    def _check_properties(self, entity, body):
        found = self.schema.unknown_property(self.schema.entities[entity], body)
        if found:
            key, type_name = found
            known = self.schema.known_properties(type_name)
            # Detail text as in vcr/http400_2010_unsupported_property.yml.
            raise malformed('Unrecognized field "%s" (class com.intuit.schema.finance.v3.%s), not marked as '
                            "ignorable (%d known properties: %s])"
                            % (key, type_name, len(known), ", ".join('"%s"' % k for k in known)))

    def _derive(self, entity, obj, current, validate):
        """Fill the fields QBO computes and enforce the rules of the entity's kind."""
        if entity in NAME_ENTITIES:
            self._derive_name(entity, obj, current, validate)
        elif entity in UNIQUE_NAME_ENTITIES:
            self._derive_list_name(entity, obj, validate)
        if self._has_field(entity, "Active"):
            obj.setdefault("Active", True)
        if self._is_sales(entity):
            self._derive_sales(entity, obj, validate)

    def _derive_name(self, entity, obj, current, validate):
        if not obj.get("DisplayName"):
            # QBO builds the display name from the person's name parts when it is omitted.
            parts = [obj.get(k) for k in ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")]
            obj["DisplayName"] = " ".join(p for p in parts if p) or obj.get("CompanyName", "")
        name = obj["DisplayName"]
        if validate:
            if not name:
                raise required("DisplayName")
            if any(ch in name for ch in FORBIDDEN_NAME_CHARS):
                raise Fault("2040", "Invalid String",
                            "DisplayName must not contain a colon (:), tab or newline", "DisplayName")
            for other in NAME_ENTITIES:
                for o in self.objects.get(other, {}).values():
                    if o["DisplayName"].lower() == name.lower() and not (other == entity and o["Id"] == obj["Id"]):
                        # vcr/http400_6240_duplicate_displayname.yml
                        raise Fault("6240", "Duplicate Name Exists Error", "The name supplied already exists. : null")
        was_active = current is None or current.get("Active") is not False
        if obj.get("Active") is False and was_active and not name.endswith(" (deleted)"):
            # Made inactive: QBO renames it so the name can be reused (quickbooks-ruby deleted_customer.xml).
            obj["DisplayName"] = name = name + " (deleted)"
        obj["FullyQualifiedName"] = name
        obj.setdefault("PrintOnCheckName", name)
        if entity == "Customer":
            for key, default in (("Job", False), ("BillWithParent", False), ("Balance", 0),
                                 ("BalanceWithJobs", 0), ("CurrencyRef", USD)):
                obj.setdefault(key, copy.deepcopy(default))

    def _derive_list_name(self, entity, obj, validate):
        name = obj.get("Name")
        if validate:
            if not name:
                raise required("Name")
            if entity == "Item" and any(ch in name for ch in FORBIDDEN_NAME_CHARS):
                raise Fault("2040", "Invalid String", "Name must not contain a colon (:), tab or newline", "Name")
            for o in self.objects.get(entity, {}).values():
                if o.get("Name", "").lower() == name.lower() and o["Id"] != obj["Id"]:
                    raise Fault("6240", "Duplicate Name Exists Error", "The name supplied already exists. : null")
        if name is not None and "FullyQualifiedName" in self.schema.type_info(self.schema.entities[entity]).fields:
            obj["FullyQualifiedName"] = name

    def _derive_sales(self, entity, obj, validate):
        """Line ids, the amount rule, the subtotal line, TotalAmt, Balance and DocNumber."""
        lines = [l for l in obj.get("Line", []) if l.get("DetailType") != "SubTotalLineDetail"]
        used_ids = {str(l["Id"]) for l in lines if l.get("Id")}
        next_line_id, subtotal = 1, D(0)
        for number, line in enumerate(lines, 1):
            if not line.get("Id"):
                while str(next_line_id) in used_ids:
                    next_line_id += 1
                line["Id"] = str(next_line_id)
                used_ids.add(line["Id"])
            line["LineNum"] = number
            if line.get("DetailType") == "DescriptionOnly":
                continue  # a comment line: its amount, if any, does not count
            if validate and "Amount" not in line:
                raise required("Line.Amount")
            amount = _number(line.get("Amount", 0), "Amount")
            detail = line.get("SalesItemLineDetail")
            if validate and detail and "Qty" in detail and "UnitPrice" in detail:
                expected = (_number(detail["Qty"], "Qty") * _number(detail["UnitPrice"], "UnitPrice")).quantize(
                    CENT, decimal.ROUND_HALF_UP)
                if amount != expected:
                    # Integrators report code 6070 with this text; element names the offending line.
                    raise Fault("6070", "Business Validation Error",
                                "Amount is not equal to UnitPrice * Qty. Supplied value:%s"
                                % format(amount.normalize(), ",f"), "Line[%d].Amount" % number)
            subtotal += -amount if line.get("DetailType") == "DiscountLineDetail" else amount
        lines.append({"Amount": subtotal, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}})
        obj["Line"] = lines
        tax = obj.setdefault("TxnTaxDetail", {"TotalTax": 0}).get("TotalTax", 0)
        obj["TotalAmt"] = subtotal + _number(tax, "TotalTax")
        if entity in OPEN_BALANCE:
            obj["Balance"] = obj["TotalAmt"]
        elif entity in PAID_ON_ISSUE:
            obj["Balance"] = 0
        obj.setdefault("TxnDate", now().date().isoformat())
        obj.setdefault("CurrencyRef", copy.deepcopy(USD))
        self._derive_doc_number(entity, obj, validate)

    def _derive_doc_number(self, entity, obj, validate):
        others = [o for o in self.objects.get(entity, {}).values() if o["Id"] != obj["Id"]]
        taken = {str(o.get("DocNumber")) for o in others}
        if obj.get("DocNumber") in (None, "", "AUTO_GENERATE"):
            # Automatic numbering continues after the highest number in use.
            numbers = [int(n) for n in taken if n.isdigit()]
            obj["DocNumber"] = str(max(numbers, default=1000) + 1)
        elif validate and entity in DOC_NUMBER_UNIQUE and str(obj["DocNumber"]) in taken:
            holder = next(o for o in others if str(o.get("DocNumber")) == str(obj["DocNumber"]))
            raise Fault("6140", "Duplicate Document Number Error",
                        "Duplicate Document Number Error : You must specify a different number. This number has "
                        "already been used. DocNumber=%s is assigned to TxnType=%s with TxnId=%s"
                        % (obj["DocNumber"], entity, holder["Id"]))

    # -- idempotency --

    def remembered(self, request_id):
        """The first answer to a write with this requestid, or None."""
        return self.responses.get(request_id)

    def remember(self, request_id, status, body):
        self.responses[request_id] = (status, body)
