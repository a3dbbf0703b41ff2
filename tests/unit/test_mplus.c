/*
 * Unit tests: the MplusKASSA SOAP client. Every operation's request is
 * validated against the XSD; money, quantities and dates are converted both
 * ways; faults and in-band results are classified; URLs are masked; and
 * mplus_call is driven against an in-process HTTP server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "mplus.h"
#include "testutil.h"

#define NS_MPLUS "urn:mplusqapi"
#define NS_SOAP  "http://schemas.xmlsoap.org/soap/envelope/"

/* ---- helpers ------------------------------------------------------------------------ */

static xmlSchemaPtr schema;

static int load_schema(void **state)
{
    (void)state;
    xmlSchemaParserCtxtPtr pc = xmlSchemaNewParserCtxt(GW_FIXTURES "/mplus/mplusqapi.xsd");
    schema = pc ? xmlSchemaParse(pc) : NULL;
    xmlSchemaFreeParserCtxt(pc);
    return schema ? 0 : -1;
}

static int free_schema(void **state)
{
    (void)state;
    xmlSchemaFree(schema);
    return 0;
}

static char schema_errors[4096];

static void collect_error(void *ctx, xmlError *e)
{
    (void)ctx;
    size_t n = strlen(schema_errors);
    if (n + 1 < sizeof schema_errors)
        snprintf(schema_errors + n, sizeof schema_errors - n, "line %d: %s", e->line,
                 e->message ? e->message : "?\n");
}

/* The Body's first element, alone in a document of its own: the XSD knows the
 * operation elements, not the SOAP envelope. */
static xmlDocPtr body_payload(const char *xml, size_t len, const char **name)
{
    xmlDocPtr env = xmlReadMemory(xml, (int)len, NULL, NULL, XML_PARSE_NONET);
    assert_non_null(env);
    xmlNodePtr root = xmlDocGetRootElement(env);
    assert_string_equal((const char *)root->name, "Envelope");
    assert_non_null(root->ns);
    assert_string_equal((const char *)root->ns->href, NS_SOAP);
    xmlNodePtr body = NULL;
    for (xmlNodePtr c = root->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, "Body") == 0)
            body = c;
    assert_non_null(body);
    xmlNodePtr first = body->children;
    while (first && first->type != XML_ELEMENT_NODE)
        first = first->next;
    assert_non_null(first);
    assert_non_null(first->ns);
    assert_string_equal((const char *)first->ns->href, NS_MPLUS);
    xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    xmlDocSetRootElement(doc, xmlDocCopyNode(first, doc, 1));
    if (name)
        *name = (const char *)xmlDocGetRootElement(doc)->name;
    xmlFreeDoc(env);
    return doc;
}

static void assert_valid(const char *what, const char *xml, size_t len)
{
    xmlDocPtr doc = body_payload(xml, len, NULL);
    xmlSchemaValidCtxtPtr vc = xmlSchemaNewValidCtxt(schema);
    schema_errors[0] = '\0';
    xmlSchemaSetValidStructuredErrors(vc, collect_error, NULL);
    int rc = xmlSchemaValidateDoc(vc, doc);
    xmlSchemaFreeValidCtxt(vc);
    xmlFreeDoc(doc);
    if (rc != 0)
        fail_msg("%s: not valid against mplusqapi.xsd:\n%s\n%s", what, schema_errors, xml);
}

static char *build(const char *op, const char *json)
{
    json_error_t je;
    json_t *req = json ? json_loads(json, 0, &je) : NULL;
    if (json && req == NULL)
        fail_msg("%s: test JSON: %s", op, je.text);
    char *xml = NULL, err[512];
    size_t len;
    if (mplus_build_request(op, req, &xml, &len, err, sizeof err) != 0)
        fail_msg("%s: %s", op, err);
    assert_int_equal(strlen(xml), len);
    json_decref(req);
    return xml;
}

static void build_fails(const char *op, const char *json, const char *needle)
{
    json_t *req = json_loads(json, 0, NULL);
    assert_non_null(req);
    char *xml = NULL, err[512];
    size_t len;
    assert_int_equal(mplus_build_request(op, req, &xml, &len, err, sizeof err), -1);
    assert_null(xml);
    if (strstr(err, needle) == NULL)
        fail_msg("%s %s: error '%s' lacks '%s'", op, json, err, needle);
    json_decref(req);
}

/* Text of the element at an XPath (prefix m: for urn:mplusqapi), or NULL. */
static char *xpath_text(const char *xml, const char *path)
{
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), NULL, NULL, XML_PARSE_NONET);
    assert_non_null(doc);
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    xmlXPathRegisterNs(ctx, BAD_CAST "m", BAD_CAST NS_MPLUS);
    xmlXPathObjectPtr res = xmlXPathEvalExpression(BAD_CAST path, ctx);
    char *out = NULL;
    if (res && res->nodesetval && res->nodesetval->nodeNr > 0) {
        xmlChar *t = xmlNodeGetContent(res->nodesetval->nodeTab[0]);
        out = strdup((const char *)t);
        xmlFree(t);
    }
    xmlXPathFreeObject(res);
    xmlXPathFreeContext(ctx);
    xmlFreeDoc(doc);
    return out;
}

static void assert_xpath(const char *xml, const char *path, const char *want)
{
    char *got = xpath_text(xml, path);
    if (want == NULL) {
        if (got != NULL)
            fail_msg("%s: expected nothing, got '%s'", path, got);
        return;
    }
    if (got == NULL || strcmp(got, want) != 0)
        fail_msg("%s: expected '%s', got '%s'\n%s", path, want, got ? got : "(none)", xml);
    free(got);
}

static const char *jstr(json_t *root, const char *path)
{
    json_t *v = root;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf, *next; p && v; p = next) {
        next = strchr(p, '/');
        if (next)
            *next++ = '\0';
        if (*p >= '0' && *p <= '9')
            v = json_array_get(v, (size_t)strtoul(p, NULL, 10));
        else
            v = json_object_get(v, p);
    }
    if (!json_is_string(v))
        fail_msg("%s: not a string", path);
    return json_string_value(v);
}

/* A SOAP envelope around a body, as Mplus (gSOAP style) answers. */
static char *envelope(const char *body)
{
    char *xml = NULL;
    if (asprintf(&xml,
                 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"" NS_SOAP "\" "
                 "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
                 "xmlns:ns1=\"" NS_MPLUS "\"><SOAP-ENV:Body>%s</SOAP-ENV:Body>"
                 "</SOAP-ENV:Envelope>",
                 body) < 0)
        abort();
    return xml;
}

/* An answer read by mplus_parse_response, after checking that its two
 * readers agree: the streaming one reads every answer the tree reader reads
 * as OK, and whatever it reads, it reads as the tree reader does. */
static int parse(const char *op, const char *body, json_t **out, char *code, char *msg)
{
    char *xml = envelope(body);
    json_t *tree, *stream;
    char tcode[64], tmsg[1024], scode[64], smsg[1024];
    int tk = mplus_parse_response_tree(op, xml, strlen(xml), &tree, tcode, 64, tmsg, 1024);
    int sk = mplus_parse_response_stream(op, xml, strlen(xml), &stream, scode, 64, smsg, 1024);
    if (tk == MPLUS_OK)
        assert_int_not_equal(sk, MPLUS_NOT_STREAMED);
    if (sk != MPLUS_NOT_STREAMED) {
        assert_int_equal(sk, tk);
        assert_string_equal(scode, tcode);
        assert_string_equal(smsg, tmsg);
        assert_int_equal(stream == NULL, tree == NULL);
        if (tree != NULL) {
            char *a = json_dumps(stream, JSON_COMPACT | JSON_PRESERVE_ORDER);
            char *b = json_dumps(tree, JSON_COMPACT | JSON_PRESERVE_ORDER);
            assert_string_equal(a, b); /* the same members in the same order */
            free(a);
            free(b);
        }
    }
    json_decref(tree);
    json_decref(stream);
    int k = mplus_parse_response(op, xml, strlen(xml), out, code, 64, msg, 1024);
    free(xml);
    return k;
}

/* ---- (1) every operation's request is valid against the XSD ------------------------- */

struct sample {
    const char *op;
    const char *json;
};

static const struct sample samples[] = {
    {"getApiVersion", NULL},
    {"getCurrentSyncMarkers", "{}"},
    {"getBranches", NULL},
    {"getVatGroupList", NULL},
    {"getTurnoverGroups", "{\"onlyActive\": true}"},
    {"getPaymentMethods", NULL},
    {"getPaymentMethodsV2",
     "{\"paymentMethodTypes\": [\"PAYMENT-METHOD-TYPE-PAYMENT\", \"PAYMENT-METHOD-TYPE-EFT\"],"
     " \"includeGiftcardType\": true}"},
    {"getEmployees", "{\"syncMarker\": 1, \"syncMarkerLimit\": 100}"},
    {"getReceipts",
     "{\"syncMarker\": 42, \"syncMarkerLimit\": 250, \"fromFinancialDate\": \"2026-01-01\","
     " \"throughFinancialDate\": \"2026-12-31\", \"branchNumbers\": [1, 2],"
     " \"articlePluNumbers\": [\"0012\", \"0013\"], \"includeLineList\": true}"},
    {"getInvoices",
     "{\"syncMarker\": 7, \"syncMarkerLimit\": 100, \"invoiceNumbers\": [{\"year\": 2026, "
     "\"number\": 17}], \"finalizeInvoices\": false}"},
    {"getOrders", "{\"syncMarker\": 7, \"orderTypeList\": [\"ORDER-TYPE-SALES-ORDER\"], "
                  "\"articleBarcodes\": [\"8712345678906\"]}"},
    {"getProducts",
     "{\"syncMarker\": 1, \"syncMarkerLimit\": 500, \"onlyActive\": false,"
     " \"changedSinceTimestamp\": \"2026-06-12T13:45:30+02:00\", \"productNumbers\": [17]}"},
    {"getArticleGroupChanges",
     "{\"syncMarker\": 7, \"syncMarkerLimit\": 100, \"groupNumbers\": [3]}"},
    {"getRelations", "{\"syncMarker\": 1, \"syncMarkerLimit\": 1000}"},
    {"findRelation", "{\"email\": \"amy@example.com\"}"},
    {"createRelation",
     "{\"extRelationId\": \"QBO-58\", \"active\": true, \"name\": \"Amy's Bird Sanctuary & Co\","
     " \"address\": \"Dorpsstraat 1\", \"zipcode\": \"1234 AB\", \"city\": \"Utrecht\","
     " \"country\": \"NL\", \"email\": \"amy@example.com\", \"birthDate\": \"1980-02-29\","
     " \"creditLimit\": 50000, \"categoryIds\": [1, 2],"
     " \"customFieldList\": [{\"fieldName\": \"loyalty\", \"strValue\": \"gold\"}],"
     " \"invoiceCredit\": \"12.50\"}"},
    {"updateRelation", "{\"relationNumber\": 1001, \"telephone\": \"+31 30 123 4567\","
                       " \"changeTimestamp\": \"2026-06-12T13:45:30+02:00\"}"},
    {"getStock", "{\"branchNumber\": 1, \"articleNumbers\": [], \"stockId\": 10}"},
    {"getJournals",
     "{\"fromFinancialDate\": \"2026-03-02\", \"throughFinancialDate\": \"2026-03-03\","
     " \"branchNumbers\": [1, 2], \"journalFilterList\": [\"JOURNAL-FILTER-RECEIPT\"]}"},
    {"getFinancialJournal",
     "{\"fromFinancialDate\": \"2026-03-02\", \"throughFinancialDate\": \"2026-03-02\"}"},
    {"setStock", "{\"branchNumber\": 1, \"articleNumber\": 1001, \"amount\": \"12.5\","
                 " \"reference\": \"count\"}"},
    {"updateStock", "{\"branchNumber\": 1, \"articleNumber\": 1001, \"amountChanged\": \"-0.530\","
                    " \"employeeNumber\": 999999}"},
    {"createProduct",
     "{\"description\": \"Shirt\", \"groupNumbers\": [3], \"articleList\": [{"
     "\"articleNumber\": 100017, \"extArticleId\": \"QBO-17\", \"active\": true,"
     " \"description\": \"Shirt M\", \"size\": \"M\", \"barcode\": \"8712345678906\","
     " \"contentQuantity\": \"0.750\", \"turnoverGroup\": 10, \"vatCode\": 2,"
     " \"purchasePrice\": \"9.10\", \"priceIncl\": \"24.95\", \"priceExcl\": 20.62,"
     " \"barcodeList\": [{\"barcode\": \"8712345678913\", \"quantity\": \"6\","
     " \"priceIncl\": \"129.00\"}]}],"
     " \"sortOrderGroupList\": [{\"groupNumber\": 3, \"sortOrder\": 1}]}"},
    {"updateProduct",
     "{\"productNumber\": 17, \"articleList\": [{\"articleNumber\": 100017, \"priceIncl\": 26}]}"},
};

static void test_every_request_valid(void **state)
{
    (void)state;
    assert_int_equal(sizeof samples / sizeof samples[0], 24);
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        assert_true(mplus_op_known(samples[i].op));
        char *xml = build(samples[i].op, samples[i].json);
        assert_valid(samples[i].op, xml, strlen(xml));
        const char *name;
        xmlDocPtr doc = body_payload(xml, strlen(xml), &name);
        assert_string_equal(name, samples[i].op);
        xmlFreeDoc(doc);
        free(xml);
    }
}

/* With no fields at all, what the schema requires is still sent. */
static void test_required_empty_lists(void **state)
{
    (void)state;
    static const char *const minimal[] = {"getReceipts",
                                          "getInvoices",
                                          "getOrders",
                                          "getProducts",
                                          "getArticleGroupChanges",
                                          "getTurnoverGroups",
                                          "getPaymentMethodsV2"};
    for (size_t i = 0; i < sizeof minimal / sizeof *minimal; i++) {
        char *xml = build(minimal[i], "{}");
        assert_valid(minimal[i], xml, strlen(xml));
        free(xml);
        xml = build(minimal[i], NULL);
        assert_valid(minimal[i], xml, strlen(xml));
        free(xml);
    }
    char *xml = build("getReceipts", "{\"syncMarker\": 5}");
    assert_xpath(xml, "//m:request/m:articlePluNumbers", "");
    assert_xpath(xml, "//m:request/m:articleBarcodes", "");
    free(xml);
    xml = build("getProducts", "{\"syncMarker\": 5}");
    assert_xpath(xml, "//m:request/m:pluNumbers", "");
    free(xml);
    /* The poller's stock request: articleNumbers given as [] and missing alike. */
    xml = build("getStock", "{\"branchNumber\": 2}");
    assert_valid("getStock minimal", xml, strlen(xml));
    assert_xpath(xml, "//m:request/m:articleNumbers", "");
    free(xml);
    /* Optional parameters are left out when not given. */
    xml = build("getRelations", NULL);
    assert_valid("getRelations without request", xml, strlen(xml));
    assert_xpath(xml, "//m:getRelations/m:request", NULL);
    free(xml);
    build_fails("getStock", "{}", "getStock: request.branchNumber is required (xsd:int)");
    build_fails("setStock", "{\"branchNumber\": 1, \"articleNumber\": 5}",
                "request.amount is required");
}

static void test_request_shape(void **state)
{
    (void)state;
    char *xml = build("getReceipts", "{\"syncMarker\": 42, \"articlePluNumbers\": [\"0012\"],"
                                     " \"branchNumbers\": [1, 2]}");
    /* Namespace-qualified, in the schema's order, lists wrapped as it says. */
    assert_non_null(strstr(xml, "xmlns:ns1=\"urn:mplusqapi\""));
    assert_non_null(strstr(xml, "<SOAP-ENV:Header/>"));
    assert_xpath(xml, "//m:getReceipts/m:request/m:syncMarker", "42");
    assert_xpath(xml, "//m:request/m:articlePluNumbers/m:text/m:text", "0012");
    assert_xpath(xml, "//m:request/m:branchNumbers[2]", "2");
    char *first = xpath_text(xml, "//m:request/*[1]");
    char *second = xpath_text(xml, "//m:request/*[2]");
    assert_string_equal(first, "42");
    assert_string_equal(second, "1"); /* branchNumbers before articlePluNumbers */
    free(first);
    free(second);
    free(xml);

    /* Text with markup characters is escaped by libxml2, not by hand. */
    xml = build("findRelation", "{\"name\": \"<b>Amy & \\\"Co\\\"</b>\"}");
    assert_xpath(xml, "//m:relation/m:name", "<b>Amy & \"Co\"</b>");
    free(xml);

    build_fails("getReceipts", "{\"sincMarker\": 1}", "unknown field 'sincMarker'");
    build_fails("getReceipts", "{\"syncMarker\": \"x1\"}", "request.syncMarker must be an integer");
    build_fails("getReceipts", "{\"syncMarkerLimit\": 4294967296}", "does not fit xsd:int");
    build_fails("getReceipts", "{\"includeLineList\": 1}", "must be true or false");
    build_fails("getReceipts", "{\"branchNumbers\": 1}", "must be an array");
    build_fails("getReceipts", "{\"articlePluNumbers\": {\"text\": []}}", "must be an array");
    build_fails("findRelation", "{\"name\": \"bell\\u0007\"}", "control character");
    build_fails("getBranches", "{\"x\": 1}", "getBranches: takes no request fields");
    build_fails("noSuchOp", "{}", "unknown Mplus operation 'noSuchOp'");
}

/* ---- (2) conversions ------------------------------------------------------------------ */

static void test_cents(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t cents;
    } ok[] = {
        {"9.95", 995},
        {"-12.50", -1250},
        {"-12.5", -1250},
        {"0", 0},
        {"10", 1000},
        {"0.01", 1},
        {"-0.05", -5},
        {"1.230", 123},
        {"007.10", 710},
        {"92233720368547758.07", INT64_MAX},
        {"-92233720368547758.08", INT64_MIN},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        int64_t c = 0;
        char err[160];
        if (mplus_cents_parse(ok[i].text, &c, err, sizeof err) != 0)
            fail_msg("%s: %s", ok[i].text, err);
        assert_int_equal(c, ok[i].cents);
    }
    static const char *const bad[] = {"9.955",
                                      "1.001",
                                      "abc",
                                      "",
                                      "-",
                                      "1.",
                                      ".5",
                                      "1e3",
                                      "+1",
                                      "1,5",
                                      " 1",
                                      "92233720368547758.08",
                                      "1.0000000000000000001"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t c;
        char err[160] = "";
        if (mplus_cents_parse(bad[i], &c, err, sizeof err) == 0)
            fail_msg("'%s' was accepted as %lld cents", bad[i], (long long)c);
        assert_true(err[0] != '\0');
    }
    char err[160];
    int64_t c;
    assert_int_equal(mplus_cents_parse("9.955", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "more than 2 decimals"));

    static const struct {
        int64_t cents;
        const char *text;
    } fmt[] = {{995, "9.95"},
               {-1250, "-12.50"},
               {0, "0.00"},
               {-5, "-0.05"},
               {5, "0.05"},
               {100, "1.00"},
               {INT64_MIN, "-92233720368547758.08"}};
    for (size_t i = 0; i < sizeof fmt / sizeof *fmt; i++) {
        char buf[MPLUS_NUM_LEN];
        mplus_cents_format(fmt[i].cents, buf, sizeof buf);
        assert_string_equal(buf, fmt[i].text);
    }
}

static void test_quantities(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t value;
        int places;
    } q[] = {{"0.530", 530, 3}, {"-1.5", -15, 1}, {"5", 5, 0}, {"-0.001", -1, 3}, {"1.00", 100, 2}};
    for (size_t i = 0; i < sizeof q / sizeof *q; i++) {
        int64_t v;
        int p;
        char err[160], buf[MPLUS_NUM_LEN];
        assert_int_equal(mplus_quantity_parse(q[i].text, &v, &p, err, sizeof err), 0);
        assert_int_equal(v, q[i].value);
        assert_int_equal(p, q[i].places);
        assert_int_equal(mplus_quantity_format(q[i].value, q[i].places, buf, sizeof buf), 0);
        assert_string_equal(buf, q[i].text);
    }
    char buf[MPLUS_NUM_LEN];
    assert_int_equal(mplus_quantity_format(1, 19, buf, sizeof buf), -1);
    assert_int_equal(mplus_quantity_format(1, -1, buf, sizeof buf), -1);

    /* In requests: the places are derived and written where the schema puts them. */
    char *xml = build("updateStock", "{\"branchNumber\": 1, \"articleNumber\": 5,"
                                     " \"amountChanged\": \"-1.5\"}");
    assert_xpath(xml, "//m:request/m:amountChanged", "-15");
    assert_xpath(xml, "//m:request/m:decimalPlaces", "1");
    assert_valid("updateStock", xml, strlen(xml));
    free(xml);
    xml = build("setStock", "{\"branchNumber\": 1, \"articleNumber\": 5, \"amount\": 3}");
    assert_xpath(xml, "//m:request/m:amount", "3");
    assert_xpath(xml, "//m:request/m:decimalPlaces", "0");
    free(xml);
    build_fails("setStock",
                "{\"branchNumber\": 1, \"articleNumber\": 5, \"amount\": \"1\", "
                "\"decimalPlaces\": 2}",
                "'decimalPlaces' is derived");
    build_fails("setStock", "{\"branchNumber\": 1, \"articleNumber\": 5, \"amount\": \"1,5\"}",
                "request.amount: '1,5' is not a decimal number");
}

static void test_money_in_requests(void **state)
{
    (void)state;
    char *xml =
        build("createProduct", "{\"articleList\": [{\"priceIncl\": \"9.95\", \"priceExcl\": 8.22,"
                               " \"purchasePrice\": 4, \"contentQuantity\": \"0.750\"}]}");
    assert_xpath(xml, "//m:article/m:priceIncl", "995");
    assert_xpath(xml, "//m:article/m:priceExcl", "822"); /* a JSON real, read exactly */
    assert_xpath(xml, "//m:article/m:purchasePrice", "400");
    assert_xpath(xml, "//m:article/m:contentQuantity", "750");
    assert_xpath(xml, "//m:article/m:contentQuantityDecimalPlaces", "3");
    free(xml);
    xml = build("createProduct", "{\"articleList\": [{\"priceIncl\": \"-12.5\"}]}");
    assert_xpath(xml, "//m:article/m:priceIncl", "-1250");
    free(xml);
    build_fails("createProduct", "{\"articleList\": [{}, {\"priceIncl\": \"9.999\"}]}",
                "createProduct: product.articleList.article[1].priceIncl: '9.999' has more than "
                "2 decimals");
    build_fails("createProduct", "{\"articleList\": [{\"priceIncl\": 9.999}]}", "more than 2");
    build_fails("createProduct", "{\"articleList\": [{\"priceIncl\": true}]}", "must be an amount");
}

static void test_dates_in_requests(void **state)
{
    (void)state;
    static const struct {
        const char *iso;
        const char *hour, *day, *tz;
    } ok[] = {
        {"2026-06-12T13:45:30+02:00", "13", "12", "120"},
        {"2026-01-15T09:00:00+0100", "9", "15", "60"},
        {"2026-03-01T10:00:00-05:00", "10", "1", "-300"},
        {"2026-01-15T08:00:00.123Z", "8", "15", "0"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"relationNumber\": 1, \"changeTimestamp\": \"%s\"}",
                 ok[i].iso);
        char *xml = build("updateRelation", json);
        assert_valid(ok[i].iso, xml, strlen(xml));
        assert_xpath(xml, "//m:changeTimestamp/m:hour", ok[i].hour);
        assert_xpath(xml, "//m:changeTimestamp/m:day", ok[i].day);
        assert_xpath(xml, "//m:changeTimestamp/m:timezone", ok[i].tz);
        assert_xpath(xml, "//m:changeTimestamp/m:isdst", "false");
        free(xml);
    }
    char *xml = build("getReceipts", "{\"fromFinancialDate\": \"2024-02-29\"}");
    assert_xpath(xml, "//m:fromFinancialDate/m:day", "29");
    assert_xpath(xml, "//m:fromFinancialDate/m:mon", "2");
    assert_xpath(xml, "//m:fromFinancialDate/m:year", "2024");
    free(xml);
    build_fails("updateRelation", "{\"changeTimestamp\": \"2026-06-12T13:45:30\"}",
                "with an offset");
    build_fails("getReceipts", "{\"fromFinancialDate\": \"2026-02-29\"}", "YYYY-MM-DD");
    build_fails("getReceipts", "{\"fromFinancialDate\": \"2026-13-01\"}", "YYYY-MM-DD");
    build_fails("getReceipts", "{\"fromFinancialDate\": \"2026-1-01\"}", "YYYY-MM-DD");
}

static void test_dates_in_responses(void **state)
{
    (void)state;
    static const struct {
        const char *tz, *want;
    } cases[] = {{"60", "2026-01-15T09:00:00+01:00"},
                 {"120", "2026-01-15T09:00:00+02:00"},
                 {"-300", "2026-01-15T09:00:00-05:00"},
                 {"0", "2026-01-15T09:00:00+00:00"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char body[1024];
        snprintf(body, sizeof body,
                 "<ns1:getApiVersionResponse><ns1:majorNumber>67</ns1:majorNumber>"
                 "<ns1:minorNumber>1</ns1:minorNumber><ns1:revisionNumber>3</ns1:revisionNumber>"
                 "<ns1:serverDate><ns1:day>15</ns1:day><ns1:mon>1</ns1:mon><ns1:year>2026"
                 "</ns1:year></ns1:serverDate><ns1:serverDateTime><ns1:sec>0</ns1:sec>"
                 "<ns1:min>0</ns1:min><ns1:hour>9</ns1:hour><ns1:day>15</ns1:day>"
                 "<ns1:mon>1</ns1:mon><ns1:year>2026</ns1:year><ns1:isdst>false</ns1:isdst>"
                 "<ns1:timezone>%s</ns1:timezone></ns1:serverDateTime>"
                 "<ns1:inDebugMode>false</ns1:inDebugMode></ns1:getApiVersionResponse>",
                 cases[i].tz);
        char *xml = envelope(body);
        assert_valid("getApiVersionResponse", xml, strlen(xml));
        free(xml);
        json_t *out;
        char code[64], msg[1024];
        assert_int_equal(parse("getApiVersion", body, &out, code, msg), MPLUS_OK);
        assert_string_equal(jstr(out, "serverDateTime"), cases[i].want);
        assert_string_equal(jstr(out, "serverDate"), "2026-01-15");
        assert_int_equal(json_integer_value(json_object_get(out, "majorNumber")), 67);
        assert_true(json_is_false(json_object_get(out, "inDebugMode")));
        json_decref(out);
    }
    /* An impossible date is an error that names the field. */
    json_t *out;
    char code[64], msg[1024];
    assert_int_equal(parse("getApiVersion",
                           "<ns1:getApiVersionResponse><ns1:serverDate><ns1:day>31</ns1:day>"
                           "<ns1:mon>2</ns1:mon><ns1:year>2026</ns1:year></ns1:serverDate>"
                           "</ns1:getApiVersionResponse>",
                           &out, code, msg),
                     -1);
    assert_null(out);
    assert_non_null(strstr(msg, "serverDate"));
    /* A field that comes once, twice: refused by both readers alike, also
     * when the two are apart. */
    static const char *const twice[] = {
        "<ns1:getApiVersionResponse><ns1:majorNumber>67</ns1:majorNumber>"
        "<ns1:majorNumber>68</ns1:majorNumber></ns1:getApiVersionResponse>",
        "<ns1:getApiVersionResponse><ns1:majorNumber>67</ns1:majorNumber>"
        "<ns1:inDebugMode>false</ns1:inDebugMode><ns1:majorNumber>67</ns1:majorNumber>"
        "</ns1:getApiVersionResponse>",
    };
    for (size_t i = 0; i < sizeof twice / sizeof *twice; i++) {
        assert_int_equal(parse("getApiVersion", twice[i], &out, code, msg), -1);
        assert_null(out);
        assert_non_null(strstr(msg, "twice"));
    }
}

/* A credit receipt as Mplus would send it: negative quantities and amounts. */
static const char credit_receipt[] =
    "<ns1:GetReceiptsResponse><ns1:receiptList><ns1:receipt>"
    "<ns1:receiptId>8d1f6a52-6a3e-4d3c-9a61-3b1c2d4e5f60</ns1:receiptId>"
    "<ns1:syncMarker>1043</ns1:syncMarker>"
    "<ns1:receiptNumber><ns1:branchNumber>1</ns1:branchNumber>"
    "<ns1:workplaceNumber>2</ns1:workplaceNumber><ns1:year>2026</ns1:year>"
    "<ns1:number>4711</ns1:number></ns1:receiptNumber>"
    "<ns1:receiptType>RECEIPT-TYPE-CREDIT-RECEIPT</ns1:receiptType>"
    "<ns1:employeeNumber>999999</ns1:employeeNumber><ns1:employeeName>Super</ns1:employeeName>"
    "<ns1:entryTimestamp><ns1:sec>30</ns1:sec><ns1:min>45</ns1:min><ns1:hour>13</ns1:hour>"
    "<ns1:day>12</ns1:day><ns1:mon>6</ns1:mon><ns1:year>2026</ns1:year>"
    "<ns1:isdst>true</ns1:isdst><ns1:timezone>120</ns1:timezone></ns1:entryTimestamp>"
    "<ns1:financialDate><ns1:day>12</ns1:day><ns1:mon>6</ns1:mon><ns1:year>2026</ns1:year>"
    "</ns1:financialDate>"
    "<ns1:financialBranchNumber>1</ns1:financialBranchNumber>"
    "<ns1:workplaceNumber>2</ns1:workplaceNumber>"
    "<ns1:totalInclAmount>-1250</ns1:totalInclAmount>"
    "<ns1:totalExclAmount>-1033</ns1:totalExclAmount>"
    "<ns1:vatMethod>VAT-METHOD-INCLUSIVE</ns1:vatMethod>"
    "<ns1:vatGroupList><ns1:vatGroup><ns1:vatCode>2</ns1:vatCode>"
    "<ns1:vatPercentage>21</ns1:vatPercentage><ns1:exclAmount>-1033</ns1:exclAmount>"
    "<ns1:vatAmount>-217</ns1:vatAmount></ns1:vatGroup></ns1:vatGroupList>"
    "<ns1:paidAmount>-1250</ns1:paidAmount>"
    "<ns1:state>RECEIPT-STATE-PAID</ns1:state>"
    "<ns1:lineList>"
    "<ns1:line><ns1:lineId>l1</ns1:lineId><ns1:articleNumber>100017</ns1:articleNumber>"
    "<ns1:pluNumber>0012</ns1:pluNumber><ns1:text>Cheese</ns1:text><ns1:data>"
    "<ns1:quantity>-530</ns1:quantity><ns1:decimalPlaces>3</ns1:decimalPlaces>"
    "<ns1:price>1500</ns1:price><ns1:discountAmount>-45</ns1:discountAmount>"
    "<ns1:totalInclAmount>-750</ns1:totalInclAmount></ns1:data></ns1:line>"
    "<ns1:line><ns1:articleNumber>100018</ns1:articleNumber><ns1:data>"
    "<ns1:quantity>-1</ns1:quantity><ns1:decimalPlaces>0</ns1:decimalPlaces>"
    "<ns1:price>500</ns1:price><ns1:totalInclAmount>-500</ns1:totalInclAmount>"
    "</ns1:data></ns1:line>"
    "</ns1:lineList>"
    "<ns1:paymentList><ns1:payment><ns1:method>CASH</ns1:method>"
    "<ns1:amount>-1250</ns1:amount></ns1:payment></ns1:paymentList>"
    "<ns1:creditedReceiptId>5c0ffee0-0000-4000-8000-000000000001</ns1:creditedReceiptId>"
    "</ns1:receipt></ns1:receiptList></ns1:GetReceiptsResponse>";

static void test_credit_receipt(void **state)
{
    (void)state;
    char *xml = envelope(credit_receipt);
    assert_valid("credit receipt", xml, strlen(xml));
    free(xml);
    json_t *out;
    char code[64], msg[1024];
    assert_int_equal(parse("getReceipts", credit_receipt, &out, code, msg), MPLUS_OK);
    assert_string_equal(code, "");
    json_t *r = json_array_get(json_object_get(out, "receiptList"), 0);
    assert_non_null(r);
    assert_string_equal(jstr(r, "receiptType"), "RECEIPT-TYPE-CREDIT-RECEIPT");
    assert_int_equal(json_integer_value(json_object_get(r, "syncMarker")), 1043);
    assert_int_equal(json_integer_value(json_object_get(r, "employeeNumber")), 999999);
    assert_string_equal(jstr(r, "totalInclAmount"), "-12.50");
    assert_string_equal(jstr(r, "totalExclAmount"), "-10.33");
    assert_string_equal(jstr(r, "paidAmount"), "-12.50");
    assert_string_equal(jstr(r, "financialDate"), "2026-06-12");
    assert_string_equal(jstr(r, "entryTimestamp"), "2026-06-12T13:45:30+02:00");
    assert_string_equal(jstr(r, "vatGroupList/0/vatAmount"), "-2.17");
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(r, "vatGroupList"), 0), "vatPercentage")),
                     21);
    assert_string_equal(jstr(r, "lineList/0/data/quantity"), "-0.530");
    assert_null(
        json_object_get(json_object_get(json_array_get(json_object_get(r, "lineList"), 0), "data"),
                        "decimalPlaces"));
    assert_string_equal(jstr(r, "lineList/0/data/price"), "15.00");
    assert_string_equal(jstr(r, "lineList/0/data/discountAmount"), "-0.45");
    assert_string_equal(jstr(r, "lineList/0/pluNumber"), "0012"); /* text stays text */
    assert_string_equal(jstr(r, "lineList/1/data/quantity"), "-1");
    assert_string_equal(jstr(r, "paymentList/0/amount"), "-12.50");
    assert_string_equal(jstr(r, "paymentList/0/method"), "CASH");
    assert_string_equal(jstr(r, "creditedReceiptId"), "5c0ffee0-0000-4000-8000-000000000001");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r, "receiptNumber"), "number")), 4711);
    json_decref(out);
}

static void test_lists_and_stock(void **state)
{
    (void)state;
    json_t *out;
    char code[64], msg[1024];
    /* Stock: three quantities with their own places; a missing places field
     * reads as two, as the official client does. */
    const char *stock = "<ns1:GetStockResponse><ns1:articleStocks>"
                        "<ns1:branchNumber>1</ns1:branchNumber>"
                        "<ns1:articleNumber>100017</ns1:articleNumber>"
                        "<ns1:stockId>88</ns1:stockId>"
                        "<ns1:amountFree>12500</ns1:amountFree>"
                        "<ns1:decimalPlacesFree>3</ns1:decimalPlacesFree>"
                        "<ns1:amountReserved>-2</ns1:amountReserved>"
                        "<ns1:decimalPlacesReserved>0</ns1:decimalPlacesReserved>"
                        "<ns1:amountIncoming>150</ns1:amountIncoming>"
                        "<ns1:ownAmountFree>+.50</ns1:ownAmountFree>"
                        "<ns1:isDayStockArticle>0</ns1:isDayStockArticle>"
                        "</ns1:articleStocks></ns1:GetStockResponse>";
    assert_int_equal(parse("getStock", stock, &out, code, msg), MPLUS_OK);
    json_t *s = json_array_get(json_object_get(out, "articleStocks"), 0);
    assert_string_equal(jstr(s, "amountFree"), "12.500");
    assert_string_equal(jstr(s, "amountReserved"), "-2");
    assert_string_equal(jstr(s, "amountIncoming"), "1.50");
    assert_string_equal(jstr(s, "ownAmountFree"), "0.50");
    assert_null(json_object_get(s, "decimalPlacesFree"));
    assert_true(json_is_false(json_object_get(s, "isDayStockArticle")));
    json_decref(out);

    /* A day's journal: money as decimal text, lists as arrays, the date as ISO. */
    const char *journal =
        "<ns1:GetJournalsResponse><ns1:journalList><ns1:journal>"
        "<ns1:financialDate><ns1:day>2</ns1:day><ns1:mon>3</ns1:mon><ns1:year>2026</ns1:year>"
        "</ns1:financialDate>"
        "<ns1:journalFilterList><ns1:journalFilter>JOURNAL-FILTER-RECEIPT</ns1:journalFilter>"
        "</ns1:journalFilterList><ns1:branchNumber>2</ns1:branchNumber>"
        "<ns1:turnoverGroupList><ns1:turnoverGroup>"
        "<ns1:turnoverGroupType>TURNOVER-GROUP-TYPE-TURNOVER</ns1:turnoverGroupType>"
        "<ns1:turnoverGroup>3</ns1:turnoverGroup><ns1:turnoverGroupName>Kleding</"
        "ns1:turnoverGroupName>"
        "<ns1:inclAmount>3990</ns1:inclAmount><ns1:exclAmount>3298</ns1:exclAmount>"
        "</ns1:turnoverGroup></ns1:turnoverGroupList>"
        "<ns1:paymentList><ns1:payment><ns1:method>PIN</ns1:method><ns1:amount>3990</ns1:amount>"
        "</ns1:payment></ns1:paymentList>"
        "<ns1:vatGroupList><ns1:vatGroup><ns1:vatCode>2</ns1:vatCode>"
        "<ns1:vatPercentage>21</ns1:vatPercentage><ns1:exclAmount>3298</ns1:exclAmount>"
        "<ns1:vatAmount>692</ns1:vatAmount></ns1:vatGroup></ns1:vatGroupList>"
        "</ns1:journal></ns1:journalList></ns1:GetJournalsResponse>";
    assert_int_equal(parse("getJournals", journal, &out, code, msg), MPLUS_OK);
    json_t *j = json_array_get(json_object_get(out, "journalList"), 0);
    assert_string_equal(jstr(j, "financialDate"), "2026-03-02");
    assert_int_equal(json_integer_value(json_object_get(j, "branchNumber")), 2);
    json_t *tg = json_array_get(json_object_get(j, "turnoverGroupList"), 0);
    assert_string_equal(jstr(tg, "inclAmount"), "39.90");
    assert_string_equal(jstr(tg, "exclAmount"), "32.98");
    assert_string_equal(jstr(json_array_get(json_object_get(j, "paymentList"), 0), "amount"),
                        "39.90");
    assert_string_equal(jstr(json_array_get(json_object_get(j, "vatGroupList"), 0), "vatAmount"),
                        "6.92");
    json_decref(out);

    /* A day's financial groups: a turnover group split over VAT codes, a payment method. */
    const char *financial =
        "<ns1:GetFinancialJournalResponse><ns1:financialGroupList><ns1:financialGroup>"
        "<ns1:financialGroupType>FINANCIAL-GROUP-TYPE-TURNOVER</ns1:financialGroupType>"
        "<ns1:financialGroupSource>FINANCIAL-GROUP-SOURCE-RECEIPT</ns1:financialGroupSource>"
        "<ns1:financialGroupNumber>3</ns1:financialGroupNumber>"
        "<ns1:financialGroupName>Kleding</ns1:financialGroupName>"
        "<ns1:accountNumber>8020</ns1:accountNumber><ns1:branchNumber>2</ns1:branchNumber>"
        "<ns1:financialPeriodClosed>true</ns1:financialPeriodClosed>"
        "<ns1:inclAmount>3990</ns1:inclAmount><ns1:exclAmount>3298</ns1:exclAmount>"
        "<ns1:vatGroupList><ns1:vatGroup><ns1:vatCode>2</ns1:vatCode>"
        "<ns1:vatPercentage>21</ns1:vatPercentage><ns1:exclAmount>3298</ns1:exclAmount>"
        "<ns1:vatAmount>692</ns1:vatAmount></ns1:vatGroup></ns1:vatGroupList>"
        "</ns1:financialGroup><ns1:financialGroup>"
        "<ns1:financialGroupType>FINANCIAL-GROUP-TYPE-PAYMENT</ns1:financialGroupType>"
        "<ns1:financialGroupSource>FINANCIAL-GROUP-SOURCE-RECEIPT</ns1:financialGroupSource>"
        "<ns1:financialGroupId>PIN</ns1:financialGroupId>"
        "<ns1:financialGroupName>Pinbetaling</ns1:financialGroupName>"
        "<ns1:accountNumber>1101</ns1:accountNumber><ns1:inclAmount>3990</ns1:inclAmount>"
        "</ns1:financialGroup></ns1:financialGroupList>"
        "<ns1:financialPeriodClosed>true</ns1:financialPeriodClosed>"
        "</ns1:GetFinancialJournalResponse>";
    assert_int_equal(parse("getFinancialJournal", financial, &out, code, msg), MPLUS_OK);
    json_t *fg = json_object_get(out, "financialGroupList");
    assert_int_equal(json_array_size(fg), 2);
    assert_true(json_is_true(json_object_get(json_array_get(fg, 0), "financialPeriodClosed")));
    assert_string_equal(jstr(json_array_get(fg, 0), "exclAmount"), "32.98");
    assert_string_equal(
        jstr(json_array_get(json_object_get(json_array_get(fg, 0), "vatGroupList"), 0),
             "vatAmount"),
        "6.92");
    assert_string_equal(jstr(json_array_get(fg, 1), "financialGroupId"), "PIN");
    assert_string_equal(jstr(json_array_get(fg, 1), "inclAmount"), "39.90");
    assert_true(json_is_true(json_object_get(out, "financialPeriodClosed")));
    json_decref(out);

    /* An empty list wrapper is an empty array; unknown (newer) elements are kept. */
    assert_int_equal(parse("getReceipts",
                           "<ns1:GetReceiptsResponse><ns1:receiptList/>"
                           "<ns1:futureField><ns1:a>1</ns1:a><ns1:a>2</ns1:a></ns1:futureField>"
                           "</ns1:GetReceiptsResponse>",
                           &out, code, msg),
                     MPLUS_OK);
    assert_true(json_is_array(json_object_get(out, "receiptList")));
    assert_int_equal(json_array_size(json_object_get(out, "receiptList")), 0);
    assert_int_equal(json_array_size(json_object_get(json_object_get(out, "futureField"), "a")), 2);
    json_decref(out);

    /* Sync markers: plain integers. */
    assert_int_equal(parse("getCurrentSyncMarkers",
                           "<ns1:getCurrentSyncMarkersResponse>"
                           "<ns1:articleSyncMarker>901</ns1:articleSyncMarker>"
                           "<ns1:receiptSyncMarker> 1043 </ns1:receiptSyncMarker>"
                           "<ns1:stockId>88</ns1:stockId>"
                           "</ns1:getCurrentSyncMarkersResponse>",
                           &out, code, msg),
                     MPLUS_OK);
    assert_int_equal(json_integer_value(json_object_get(out, "receiptSyncMarker")), 1043);
    assert_int_equal(json_integer_value(json_object_get(out, "stockId")), 88);
    json_decref(out);

    /* A non-number where the schema has one is an error naming where. */
    assert_int_equal(parse("getReceipts",
                           "<ns1:GetReceiptsResponse><ns1:receiptList><ns1:receipt>"
                           "<ns1:totalInclAmount>12.50</ns1:totalInclAmount>"
                           "</ns1:receipt></ns1:receiptList></ns1:GetReceiptsResponse>",
                           &out, code, msg),
                     -1);
    assert_null(out);
    assert_non_null(strstr(msg, "receiptList.receipt.totalInclAmount"));
}

/* ---- (3) faults and in-band results -------------------------------------------------- */

static void fault_is(const char *fcode, const char *fstring, int kind, const char *code_want)
{
    char body[1024];
    snprintf(body, sizeof body,
             "<SOAP-ENV:Fault><faultcode>%s</faultcode><faultstring>%s</faultstring>"
             "<detail>request 42</detail></SOAP-ENV:Fault>",
             fcode, fstring);
    json_t *out = (json_t *)1;
    char code[64], msg[1024];
    assert_int_equal(parse("getReceipts", body, &out, code, msg), kind);
    assert_null(out);
    assert_string_equal(code, code_want);
    if (strstr(msg, fstring) == NULL || strstr(msg, "getReceipts") == NULL ||
        strstr(msg, "request 42") == NULL)
        fail_msg("message '%s' lacks the fault's text", msg);
}

static void test_faults(void **state)
{
    (void)state;
    fault_is("SOAP-ENV:Client", "Validation constraint violation: data type mismatch", MPLUS_FAULT,
             "Client");
    fault_is("SOAP-ENV:Server", "Database connection lost", MPLUS_RETRY, "Server");
    fault_is("SOAP-ENV:Server.Busy", "Too many requests", MPLUS_RETRY, "Server.Busy");
    fault_is("SOAP-ENV:Client.Authentication", "Invalid ident or secret", MPLUS_AUTH,
             "Client.Authentication");
    fault_is("SOAP-ENV:Client", "Unknown ident", MPLUS_AUTH, "Client");
    fault_is("Client", "Authentication failed", MPLUS_AUTH, "Client");
    /* A Server fault that mentions credentials is still the server's trouble. */
    fault_is("SOAP-ENV:Server", "credential store unavailable", MPLUS_RETRY, "Server");
    fault_is("SOAP-ENV:VersionMismatch", "SOAP 1.2 expected", MPLUS_FAULT, "VersionMismatch");

    char msg[1024], code[64];
    json_t *out;
    assert_int_equal(parse("getReceipts",
                           "<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client.Authentication</faultcode>"
                           "<faultstring>Invalid ident or secret</faultstring></SOAP-ENV:Fault>",
                           &out, code, msg),
                     MPLUS_AUTH);
    assert_non_null(strstr(msg, "mplus_ident"));
}

static void result_is(const char *op, const char *body, int kind, const char *code_want,
                      const char *needle)
{
    json_t *out;
    char code[64], msg[1024];
    assert_int_equal(parse(op, body, &out, code, msg), kind);
    assert_non_null(out); /* the answer is there to look at, whatever it says */
    assert_string_equal(code, code_want);
    if (needle && strstr(msg, needle) == NULL)
        fail_msg("%s: message '%s' lacks '%s'", op, msg, needle);
    if (kind == MPLUS_OK && code_want[0] == '\0')
        assert_string_equal(msg, "");
    json_decref(out);
}

static void test_in_band_results(void **state)
{
    (void)state;
    const char *failed = "<ns1:CreateRelationResponse>"
                         "<ns1:result>CREATE-RELATION-RESULT-FAILED</ns1:result>"
                         "<ns1:relationNumber>0</ns1:relationNumber>"
                         "<ns1:errorMessage>E-mail address is not valid</ns1:errorMessage>"
                         "</ns1:CreateRelationResponse>";
    char *xml = envelope(failed);
    assert_valid("CreateRelationResponse", xml, strlen(xml));
    free(xml);
    result_is("createRelation", failed, MPLUS_FAULT, "CREATE-RELATION-RESULT-FAILED",
              "createRelation: CREATE-RELATION-RESULT-FAILED: E-mail address is not valid");
    result_is("createRelation",
              "<ns1:CreateRelationResponse><ns1:result>CREATE-RELATION-RESULT-OK</ns1:result>"
              "<ns1:relationNumber>1001</ns1:relationNumber><ns1:errorMessage/>"
              "</ns1:CreateRelationResponse>",
              MPLUS_OK, "", NULL);
    result_is("createProduct",
              "<ns1:CreateProductResponse>"
              "<ns1:result>CREATE-PRODUCT-RESULT-FAILED-ARTICLE-NUMBER-ALREADY-TAKEN</ns1:result>"
              "<ns1:productNumber>0</ns1:productNumber>"
              "<ns1:errorMessage>Article number 100017 is already in use</ns1:errorMessage>"
              "</ns1:CreateProductResponse>",
              MPLUS_FAULT, "CREATE-PRODUCT-RESULT-FAILED-ARTICLE-NUMBER-ALREADY-TAKEN",
              "Article number 100017 is already in use");
    result_is("updateProduct",
              "<ns1:UpdateProductResponse><ns1:result>UPDATE-PRODUCT-RESULT-NOT-ALLOWED"
              "</ns1:result><ns1:errorMessage/></ns1:UpdateProductResponse>",
              MPLUS_FAULT, "UPDATE-PRODUCT-RESULT-NOT-ALLOWED", "no errorMessage");
    result_is("setStock",
              "<ns1:SetStockResponse><ns1:result>SET-STOCK-RESULT-NO-STOCK-ARTICLE</ns1:result>"
              "</ns1:SetStockResponse>",
              MPLUS_FAULT, "SET-STOCK-RESULT-NO-STOCK-ARTICLE", "setStock");
    /* Nothing found is an answer. */
    result_is("findRelation",
              "<ns1:FindRelationResponse><ns1:result>FIND-RELATION-RESULT-NOT-FOUND</ns1:result>"
              "</ns1:FindRelationResponse>",
              MPLUS_OK, "FIND-RELATION-RESULT-NOT-FOUND", NULL);
}

static void test_not_an_answer(void **state)
{
    (void)state;
    json_t *out;
    char code[64], msg[1024];
    assert_int_equal(mplus_parse_response("getReceipts", "", 0, &out, code, 64, msg, 1024), -1);
    assert_int_equal(
        mplus_parse_response("getReceipts", "<html>oops", 10, &out, code, 64, msg, 1024), -1);
    assert_non_null(strstr(msg, "not XML"));
    const char *html = "<html><body>502 Bad Gateway</body></html>";
    assert_int_equal(
        mplus_parse_response("getReceipts", html, strlen(html), &out, code, 64, msg, 1024), -1);
    assert_non_null(strstr(msg, "not a SOAP envelope"));
    assert_int_equal(parse("getReceipts", "<ns1:GetInvoicesResponse/>", &out, code, msg), -1);
    assert_non_null(strstr(msg, "expected <GetReceiptsResponse>"));
    const char *dtd =
        "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><SOAP-ENV:Envelope xmlns:SOAP-ENV=\"" NS_SOAP
        "\"><SOAP-ENV:Body><GetReceiptsResponse/></SOAP-ENV:Body>"
        "</SOAP-ENV:Envelope>";
    assert_int_equal(
        mplus_parse_response("getReceipts", dtd, strlen(dtd), &out, code, 64, msg, 1024), -1);
    assert_non_null(strstr(msg, "DTD"));
    assert_null(out);
    assert_int_equal(parse("noSuchOp", "<x/>", &out, code, msg), -1);
}

/* ---- (4) masking ------------------------------------------------------------------------ */

static void test_mask_url(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"https://api.mpluskassa.nl:50123/?ident=shop%201&secret=s3cr3t",
         "https://api.mpluskassa.nl:50123/?ident=***&secret=***"},
        {"https://api.mpluskassa.nl:50123/?secret=s3cr3t&ident=shop&x=1#frag",
         "https://api.mpluskassa.nl:50123/?secret=***&ident=***&x=1#frag"},
        {"https://user:pw@h.example/x?a=1&SECRET=zz",
         "https://user:***@h.example/x?a=1&SECRET=***"},
        {"https://h.example/?identity=1&secrets=2", "https://h.example/?identity=1&secrets=2"},
        {"https://h.example:1/", "https://h.example:1/"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[256];
        mplus_mask_url(cases[i].in, out, sizeof out);
        assert_string_equal(out, cases[i].out);
    }
    /* Truncation never leaves a piece of a secret behind. */
    const char *url = "https://h/?ident=abcdefgh&secret=ijklmnop";
    for (size_t n = 1; n < 60; n++) {
        char out[64];
        mplus_mask_url(url, out, n);
        assert_true(strlen(out) < n);
        assert_null(strstr(out, "abc"));
        assert_null(strstr(out, "ijk"));
    }
}

/* ---- mplus_call against an in-process server --------------------------------------------- */

struct server {
    struct evhttp *http;
    int status;
    const char *answer;
    /* what the last request brought */
    char uri[512], action[128], request_id[64], content_type[128];
    char *body;
};

static void on_request(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    snprintf(s->uri, sizeof s->uri, "%s", evhttp_request_get_uri(req));
    const char *v = evhttp_find_header(h, "SOAPAction");
    snprintf(s->action, sizeof s->action, "%s", v ? v : "");
    v = evhttp_find_header(h, "X-Request-Id");
    snprintf(s->request_id, sizeof s->request_id, "%s", v ? v : "");
    v = evhttp_find_header(h, "Content-Type");
    snprintf(s->content_type, sizeof s->content_type, "%s", v ? v : "");
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    free(s->body);
    s->body = malloc(n + 1);
    evbuffer_copyout(in, s->body, n);
    s->body[n] = '\0';
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, s->answer, strlen(s->answer));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/xml; charset=utf-8");
    evhttp_send_reply(req, s->status, "x", out);
    evbuffer_free(out);
}

struct outcome {
    int calls;
    struct mplus_result r;
    json_t *body;
    bool inside; /* set while mplus_call runs */
    bool called_inside;
};

static void on_result(const struct mplus_result *r, void *arg)
{
    struct outcome *o = arg;
    o->calls++;
    o->called_inside = o->called_inside || o->inside;
    o->r = *r;
    o->body = json_incref(r->body);
}

static void run_call(struct event_base *base, struct mplus *m, const struct gw_connection *c,
                     const char *op, const char *json, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    json_t *req = json ? json_loads(json, 0, NULL) : NULL;
    o->inside = true;
    assert_int_equal(mplus_call(m, c, op, req, on_result, o), 0);
    o->inside = false;
    json_decref(req);
    for (int i = 0; i < 500 && o->calls == 0; i++)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(o->calls, 1);
    assert_false(o->called_inside);
}

static void test_call(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct server s = {.status = 200};
    s.http = evhttp_new(base);
    struct evhttp_bound_socket *sock = evhttp_bind_socket_with_handle(s.http, "127.0.0.1", 0);
    assert_non_null(sock);
    evhttp_set_gencb(s.http, on_request, &s);
    struct sockaddr_in sin;
    socklen_t sl = sizeof sin;
    getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&sin, &sl);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(sin.sin_port));

    struct gw_connection conn = {
        .name = "shop1", .mplus_url = url, .mplus_ident = "shop 1", .mplus_secret = "s&cr=t"};
    struct gw_config cfg = {.conns = &conn, .nconns = 1};
    struct http_client *hc = http_client_new(base, 4);
    struct mplus *m = mplus_new(base, &cfg, hc);
    struct outcome o;

    /* OK: credentials in the query, URL-encoded; SOAPAction the bare name. */
    char *answer = envelope(credit_receipt);
    s.answer = answer;
    run_call(base, m, &conn, "getReceipts", "{\"syncMarker\": 1044, \"syncMarkerLimit\": 100}", &o);
    assert_int_equal(o.r.kind, MPLUS_OK);
    assert_int_equal(o.r.status, 200);
    assert_string_equal(jstr(o.body, "receiptList/0/totalInclAmount"), "-12.50");
    assert_string_equal(s.uri, "/?ident=shop%201&secret=s%26cr%3Dt");
    assert_string_equal(s.action, "getReceipts");
    assert_string_equal(s.content_type, "text/xml; charset=utf-8");
    assert_true(s.request_id[0] != '\0');
    assert_string_equal(s.request_id, o.r.request_id);
    assert_non_null(strstr(s.body, "<ns1:syncMarker>1044</ns1:syncMarker>"));
    assert_valid("sent body", s.body, strlen(s.body));
    json_decref(o.body);
    free(answer);
    char first_id[64];
    snprintf(first_id, sizeof first_id, "%s", s.request_id);

    /* Refused credentials: HTTP 500 with a Client.Authentication fault. */
    answer = envelope("<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client.Authentication</faultcode>"
                      "<faultstring>Invalid ident or secret</faultstring></SOAP-ENV:Fault>");
    s.answer = answer;
    s.status = 500;
    run_call(base, m, &conn, "getApiVersion", NULL, &o);
    assert_int_equal(o.r.kind, MPLUS_AUTH);
    assert_int_equal(o.r.status, 500);
    assert_null(o.body);
    assert_string_equal(o.r.code, "Client.Authentication");
    assert_non_null(strstr(o.r.error, "Invalid ident or secret"));
    assert_non_null(strstr(o.r.error, "HTTP 500"));
    assert_null(strstr(o.r.error, "s&cr=t"));
    assert_null(strstr(o.r.error, "s%26cr"));
    assert_string_not_equal(s.request_id, first_id); /* a new id per call */
    free(answer);

    /* A proxy's 503 page: retry. */
    s.answer = "<html>Service Unavailable</html>";
    s.status = 503;
    run_call(base, m, &conn, "getApiVersion", NULL, &o);
    assert_int_equal(o.r.kind, MPLUS_RETRY);
    assert_non_null(strstr(o.r.error, "HTTP 503"));
    assert_null(strstr(o.r.error, "secret=s"));

    /* In-band failure over HTTP 200. */
    answer = envelope("<ns1:UpdateStockResponse><ns1:result>UPDATE-STOCK-RESULT-ARTICLE-NOT-FOUND"
                      "</ns1:result></ns1:UpdateStockResponse>");
    s.answer = answer;
    s.status = 200;
    run_call(base, m, &conn, "updateStock",
             "{\"branchNumber\": 1, \"articleNumber\": 5, \"amountChanged\": \"1\"}", &o);
    assert_int_equal(o.r.kind, MPLUS_FAULT);
    assert_non_null(o.body);
    assert_string_equal(o.r.code, "UPDATE-STOCK-RESULT-ARTICLE-NOT-FOUND");
    json_decref(o.body);
    free(answer);

    /* A request that cannot be built: a fault, reported from the loop. */
    run_call(base, m, &conn, "getStock", "{\"branchNumber\": \"one\"}", &o);
    assert_int_equal(o.r.kind, MPLUS_FAULT);
    assert_non_null(strstr(o.r.error, "request.branchNumber must be an integer"));
    run_call(base, m, &conn, "noSuchOp", NULL, &o);
    assert_int_equal(o.r.kind, MPLUS_FAULT);

    /* Nobody listening: retry, and the error shows the URL without secrets. */
    evhttp_free(s.http);
    s.http = NULL;
    run_call(base, m, &conn, "getApiVersion", NULL, &o);
    assert_int_equal(o.r.kind, MPLUS_RETRY);
    assert_non_null(strstr(o.r.error, "unreachable"));
    assert_null(strstr(o.r.error, "ident="));

    /* A call still pending when the client goes away is dropped silently. */
    json_t *req = json_pack("{s:i}", "branchNumber", 1);
    assert_int_equal(mplus_call(m, &conn, "getStock", req, on_result, &o), 0);
    json_decref(req);
    int calls = o.calls;
    http_client_free(hc);
    mplus_free(m);
    assert_int_equal(o.calls, calls);
    free(s.body);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_request_valid),
        cmocka_unit_test(test_required_empty_lists),
        cmocka_unit_test(test_request_shape),
        cmocka_unit_test(test_cents),
        cmocka_unit_test(test_quantities),
        cmocka_unit_test(test_money_in_requests),
        cmocka_unit_test(test_dates_in_requests),
        cmocka_unit_test(test_dates_in_responses),
        cmocka_unit_test(test_credit_receipt),
        cmocka_unit_test(test_lists_and_stock),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_in_band_results),
        cmocka_unit_test(test_not_an_answer),
        cmocka_unit_test(test_mask_url),
        cmocka_unit_test(test_call),
    };
    int rc = cmocka_run_group_tests_name("mplus", tests, load_schema, free_schema);
    xmlCleanupParser();
    return rc;
}
