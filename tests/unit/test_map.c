/* Unit tests: the data mapper - default customer mappings, overrides, errors with lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "jsonout.h"
#include "map.h"
#include "util.h"

#define DIR GW_SOURCE_DIR "/mapping"

static struct gw_config *load(const char *text)
{
    char path[] = "/tmp/gw_map_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    struct gw_config *cfg = NULL;
    char err[512];
    if (config_load(path, &cfg, err, sizeof err) != 0)
        fail_msg("%s", err);
    unlink(path);
    return cfg;
}

static const char *str(json_t *o, const char *path)
{
    /* "a.b" walks objects */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = o;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save))
        v = json_object_get(v, k);
    return json_string_value(v);
}

static void test_company_and_person_relations(void **state)
{
    (void)state;
    struct gw_config *cfg = load("[connection.a]\nflows = customers\n"
                                 "tax_code_by_country = NL:5, *:NON\ndefault_country = NL\n");
    struct mapper *m;
    char err[512];
    if (map_open(cfg, DIR, &m, err, sizeof err) != 0)
        fail_msg("%s", err);
    json_t *company =
        json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "relationNumber", (json_int_t)7,
                  "name", "Acme", "companyName", "Acme: Tools\tBV", "contact", "Jan de Vries",
                  "email", "jan@acme.nl", "address", "Dam 1", "country", "Belgie", "active", 1);
    json_t *out;
    assert_int_equal(
        map_run(m, &cfg->conns[0], MAP_CUSTOMERS_TO_QBO, company, NULL, &out, err, sizeof err), 0);
    /* Characters QuickBooks rejects in names are gone; the contact is the person. */
    assert_string_equal(str(out, "DisplayName"), "Acme Tools BV");
    assert_string_equal(str(out, "CompanyName"), "Acme Tools BV");
    assert_string_equal(str(out, "GivenName"), "Jan");
    assert_string_equal(str(out, "FamilyName"), "de Vries");
    assert_string_equal(str(out, "BillAddr.Line1"), "Dam 1");
    assert_string_equal(str(out, "BillAddr.Country"), "BE");
    assert_string_equal(str(out, "DefaultTaxCodeRef.value"), "NON");
    json_decref(out);

    json_t *person =
        json_pack("{s:s, s:s, s:b}", "name", "Amy Lee", "email", " amy@x.nl ", "active", 0);
    assert_int_equal(
        map_run(m, &cfg->conns[0], MAP_CUSTOMERS_TO_QBO, person, NULL, &out, err, sizeof err), 0);
    assert_string_equal(str(out, "DisplayName"), "Amy Lee");
    assert_null(json_object_get(out, "CompanyName"));
    assert_string_equal(str(out, "PrimaryEmailAddr.Address"), "amy@x.nl");
    assert_true(json_is_false(json_object_get(out, "Active")));
    /* No country on the relation: the default country decides the tax code. */
    assert_string_equal(str(out, "DefaultTaxCodeRef.value"), "5");
    json_decref(out);

    json_t *customer =
        json_pack("{s:s, s:s, s:s, s:s, s:{s:s}, s:{s:s, s:s}}", "Id", "42", "DisplayName",
                  "Acme BV", "CompanyName", "Acme BV", "GivenName", "Jan", "PrimaryEmailAddr",
                  "Address", "jan@acme.nl", "BillAddr", "Line1", "Dam 1", "Country", "Netherlands");
    assert_int_equal(
        map_run(m, &cfg->conns[0], MAP_CUSTOMERS_TO_MPLUS, customer, NULL, &out, err, sizeof err),
        0);
    assert_string_equal(str(out, "extRelationId"), "42");
    assert_string_equal(str(out, "companyName"), "Acme BV");
    assert_string_equal(str(out, "contact"), "Jan");
    assert_string_equal(str(out, "country"), "NL");
    json_decref(out);
    json_decref(company);
    json_decref(person);
    json_decref(customer);
    map_close(m);
    config_free(cfg);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* Connection "a" (its lines in conf) running program, written to path, as
 * its customers-to-qbo: what map_open answers; *cfg is loaded either way. */
static int open_own(const char *path, const char *program, const char *conf, struct gw_config **cfg,
                    struct mapper **m, char *err, size_t errlen)
{
    write_file(path, program);
    char text[512];
    snprintf(text, sizeof text, "[connection.a]\n%smap_customers_to_qbo = %s\n", conf, path);
    *cfg = load(text);
    return map_open(*cfg, DIR, m, err, errlen);
}

static void test_override_and_errors(void **state)
{
    (void)state;
    struct gw_config *cfg;
    struct mapper *m;
    char err[512];
    assert_int_equal(open_own("/tmp/gw_map_own.jq",
                              "{DisplayName: (.source.name | ascii_upcase)}\n",
                              "flows = customers\n", &cfg, &m, err, sizeof err),
                     0);
    json_t *r = json_pack("{s:s}", "name", "shop");
    json_t *out;
    assert_int_equal(
        map_run(m, &cfg->conns[0], MAP_CUSTOMERS_TO_QBO, r, NULL, &out, err, sizeof err), 0);
    assert_string_equal(str(out, "DisplayName"), "SHOP");
    json_decref(out);

    /* A runtime error fails this one run, with a message, not the mapper. */
    json_t *bad = json_pack("{s:i}", "name", 5);
    assert_int_equal(
        map_run(m, &cfg->conns[0], MAP_CUSTOMERS_TO_QBO, bad, NULL, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "/tmp/gw_map_own.jq"));
    assert_int_equal(
        map_run(m, &cfg->conns[0], MAP_CUSTOMERS_TO_QBO, r, NULL, &out, err, sizeof err), 0);
    json_decref(out);
    json_decref(bad);
    json_decref(r);
    map_close(m);
    config_free(cfg);

    /* A syntax error stops the start, naming the file and the line. */
    assert_int_equal(open_own("/tmp/gw_map_bad.jq",
                              "{\n  DisplayName: .source.name,\n  Oops: (\n}\n",
                              "flows = customers\n", &cfg, &m, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "/tmp/gw_map_bad.jq"));
    assert_non_null(strstr(err, "line 4"));
    config_free(cfg);
    unlink("/tmp/gw_map_own.jq");
    unlink("/tmp/gw_map_bad.jq");
}

/* What connection conn's mapping name makes of {from: "shop"}: key is want. */
static void expect_name(struct mapper *m, const struct gw_connection *conn, const char *name,
                        const char *from, const char *key, const char *want)
{
    json_t *r = json_pack("{s:s}", from, "shop");
    json_t *out = NULL;
    char err[512];
    assert_int_equal(map_run(m, conn, name, r, NULL, &out, err, sizeof err), 0);
    assert_string_equal(str(out, key), want);
    json_decref(out);
    json_decref(r);
}

/* The programs of every connection are compiled as one, each running as
 * its own; a file that is not a plain program makes them compile one by
 * one, with the same results. */
static void test_programs_compiled_together(void **state)
{
    (void)state;
    static const struct {
        const char *a;
        bool together;
    } cases[] = {
        /* Own defs, and a comment on a last line without a newline. */
        {"def up: ascii_upcase;\n{DisplayName: (.source.name | up)}\n# a", true},
        /* A module directive cannot stand inside a function: one by one. */
        {"include \"gateway\";\n{DisplayName: (.source.name | ascii_upcase)}\n", false},
    };
    write_file("/tmp/gw_map_b.jq", "{DisplayName: (.source.name + \"!\"), Conn: .connection}");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file("/tmp/gw_map_a.jq", cases[i].a);
        struct gw_config *cfg =
            load("[connection.a]\nflows = customers\nmap_customers_to_qbo = /tmp/gw_map_a.jq\n"
                 "[connection.b]\nflows = customers\nmap_customers_to_qbo = /tmp/gw_map_b.jq\n");
        struct mapper *m;
        char err[512];
        bool together;
        assert_int_equal(map_open(cfg, DIR, &m, err, sizeof err), 0);
        assert_int_equal(map_programs(m, &together), 4);
        assert_int_equal(together, cases[i].together);
        expect_name(m, &cfg->conns[0], MAP_CUSTOMERS_TO_QBO, "name", "DisplayName", "SHOP");
        expect_name(m, &cfg->conns[1], MAP_CUSTOMERS_TO_QBO, "name", "DisplayName", "shop!");
        expect_name(m, &cfg->conns[1], MAP_CUSTOMERS_TO_QBO, "name", "Conn", "b");
        /* One file (the default) for both connections. */
        expect_name(m, &cfg->conns[0], MAP_CUSTOMERS_TO_MPLUS, "DisplayName", "name", "shop");
        expect_name(m, &cfg->conns[1], MAP_CUSTOMERS_TO_MPLUS, "DisplayName", "name", "shop");
        map_close(m);
        config_free(cfg);
    }
    /* A ';' of the file's own is refused as it is when the file is alone:
     * it does not end the function it is compiled in. */
    struct gw_config *cfg;
    struct mapper *m;
    char err[512];
    assert_int_equal(open_own("/tmp/gw_map_a.jq", "{DisplayName: .source.name};\ndef x: 1",
                              "flows = customers\n", &cfg, &m, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "/tmp/gw_map_a.jq"));
    config_free(cfg);
    unlink("/tmp/gw_map_a.jq");
    unlink("/tmp/gw_map_b.jq");
}

/* Values cross to jq and back as they are (text with a NUL, whole and
 * fractional numbers, nesting, order), and members left null go, with the
 * objects emptied by that, also inside arrays. */
static void test_values_and_nulls(void **state)
{
    (void)state;
    struct gw_config *cfg;
    struct mapper *m;
    char err[512];
    assert_int_equal(
        open_own("/tmp/gw_map_nulls.jq",
                 "{Echo: .source, Gone: null, Empty: {a: null}, Kept: {a: null, b: 1},\n"
                 " Line: [{Amount: \"9.95\", X: null}, null, {Y: {z: null}}], Conn: .connection,\n"
                 " Tax: .settings.tax_code_by_country.NL}\n",
                 "flows = customers\ntax_code_by_country = NL:5\n", &cfg, &m, err, sizeof err),
        0);
    json_t *src = json_loads("{\"t\":\"a\\u0000b\",\"n\":12,\"f\":0.5,\"neg\":-3,"
                             "\"deep\":{\"x\":[true,false,\"s\"]},\"z\":\"last\"}",
                             JSON_ALLOW_NUL, NULL);
    assert_non_null(src);
    json_t *out;
    assert_int_equal(
        map_run(m, &cfg->conns[0], MAP_CUSTOMERS_TO_QBO, src, NULL, &out, err, sizeof err), 0);
    char *text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text, "{\"Echo\":{\"t\":\"a\\u0000b\",\"n\":12,\"f\":0.5,\"neg\":-3,"
                              "\"deep\":{\"x\":[true,false,\"s\"]},\"z\":\"last\"},"
                              "\"Kept\":{\"b\":1},\"Line\":[{\"Amount\":\"9.95\"},null,{}],"
                              "\"Conn\":\"a\",\"Tax\":\"5\"}");
    free(text);
    json_decref(out);
    json_decref(src);
    map_close(m);
    config_free(cfg);
    unlink("/tmp/gw_map_nulls.jq");
}

/* The text map_run_text writes is the tree map_run makes, as gw_json_text
 * writes it: for a program's edge cases and for the default sales mapping. */
static void same_text(struct mapper *m, const struct gw_connection *c, const char *name,
                      json_t *src, const char *want)
{
    json_t *tree;
    char *text, err[512];
    size_t len = 0;
    if (map_run(m, c, name, src, NULL, &tree, err, sizeof err) != 0)
        fail_msg("%s", err);
    if (map_run_text(m, c, name, src, NULL, &text, &len, err, sizeof err) != 0)
        fail_msg("%s", err);
    char *dumped = gw_json_text(tree, JSON_COMPACT | JSON_PRESERVE_ORDER, NULL);
    assert_string_equal(text, dumped);
    assert_int_equal(len, strlen(text));
    if (want != NULL)
        assert_string_equal(text, want);
    free(dumped);
    free(text);
    json_decref(tree);
}

static void test_text_as_the_tree_writes(void **state)
{
    (void)state;
    struct gw_config *cfg;
    struct mapper *m;
    char err[512];
    assert_int_equal(
        open_own("/tmp/gw_map_text.jq",
                 "if .source.none then {a: null, b: {c: null}} else\n"
                 "{Echo: .source, Gone: null, Empty: {a: null}, Kept: {a: null, b: 1},\n"
                 " Line: [{Amount: \"9.95\", X: null}, null, {Y: {z: null}}, nan, infinite],\n"
                 " Nums: [1e17, 99999999999999999, 1e16, -2.5, 0.1, 3, -0, (1/3)],\n"
                 " Odd: nan, Inf: infinite, Esc: \"q\\\"\\\\\\n\\u0001\u00e9\", Ok: true, No: "
                 "false} end\n",
                 "flows = customers, sales\n", &cfg, &m, err, sizeof err),
        0);
    const struct gw_connection *c = &cfg->conns[0];
    json_t *src = json_loads("{\"t\":\"a\\u0000b\",\"n\":12,\"f\":0.5,\"neg\":-3,"
                             "\"deep\":{\"x\":[true,false,\"s\",{}]},\"e\":{}}",
                             JSON_ALLOW_NUL, NULL);
    assert_non_null(src);
    same_text(m, c, MAP_CUSTOMERS_TO_QBO, src, NULL);
    json_t *none = json_pack("{s:b}", "none", 1);
    same_text(m, c, MAP_CUSTOMERS_TO_QBO, none, "{}"); /* nothing but nulls */
    json_decref(none);
    json_decref(src);

    /* The default sales mapping on a receipt of two lines. */
    json_t *sale = json_loads(
        "{\"entity\":\"SalesReceipt\",\"kind\":\"receipt\",\"customer\":\"58\","
        "\"document\":{\"financialDate\":\"2026-12-01\",\"vatMethod\":\"VAT-METHOD-INCLUSIVE\","
        "\"invoiceAddress\":{\"address\":\" Dam 1 \",\"city\":\"\",\"country\":\"NL\"}},"
        "\"doc_number\":\"1-12\",\"private_note\":\"Mplus receipt R-1\",\"mplus_id\":\"R-1\","
        "\"lines\":[{\"item\":\"100\",\"tax_code\":\"7\",\"amount\":\"12.40\",\"qty\":\"2\","
        "\"unit_price\":\"6.20\",\"amount_incl\":\"15.00\",\"description\":\"Tea\"},"
        "{\"item\":\"101\",\"tax_code\":\"7\",\"amount\":\"-1.00\",\"qty\":\"-1\","
        "\"unit_price\":\"1.00\",\"amount_incl\":\"-1.21\",\"description\":\"\"}],"
        "\"tax_total\":\"2.39\",\"total\":\"13.79\",\"rounding\":\"0.00\","
        "\"payment_method\":\"1\",\"deposit_account\":\"35\"}",
        0, NULL);
    assert_non_null(sale);
    same_text(m, c, MAP_SALES_TO_QBO, sale, NULL);
    json_decref(sale);
    map_close(m);
    config_free(cfg);
    unlink("/tmp/gw_map_text.jq");
}

/* The library's trimming helpers: nothing in a string is null, white space
 * at either end goes, gw_clean takes out what QuickBooks refuses in names. */
static void test_library_trims(void **state)
{
    (void)state;
    struct gw_config *cfg;
    struct mapper *m;
    char err[512];
    assert_int_equal(
        open_own(
            "/tmp/gw_map_trim.jq",
            "{a: (\"\" | gw_nonempty), b: (\" x \" | gw_nonempty), c: (\"\" | gw_clean),\n"
            " d: (\"a:b\" | gw_clean), e: (\"  \" | gw_clean), f: (\"y\\t\" | gw_nonempty),\n"
            " g: (\"\u00e9 \" | gw_nonempty), h: (\"Tea\" | gw_nonempty), i: (5 | gw_nonempty),\n"
            " j: (\"p  q\" | gw_clean),\n"
            /* The quick test lets a string through unchanged only when nothing
             * can need trimming: each of these goes the full way, which then
             * trims, cleans or (n, o, r) keeps it. */
            " k: (\"x\\u000b\" | gw_nonempty), l: (\"x\\u00a0\" | gw_nonempty),\n"
            " m: (\"\\u2003x\" | gw_clean), n: (\"caf\u00e9\" | gw_clean), o: (\"a\\\\b\" | "
            "gw_clean),\n"
            " p: (\"Blue \" | gw_clean), q: (\"x\\ny\" | gw_clean), r: (\"x\\u0001\" | "
            "gw_nonempty)}\n",
            "flows = customers\n", &cfg, &m, err, sizeof err),
        0);
    json_t *src = json_object();
    char *text = NULL;
    assert_int_equal(map_run_text(m, &cfg->conns[0], MAP_CUSTOMERS_TO_QBO, src, NULL, &text, NULL,
                                  err, sizeof err),
                     0);
    assert_string_equal(text, "{\"b\":\"x\",\"d\":\"ab\",\"f\":\"y\",\"g\":\"\u00e9\","
                              "\"h\":\"Tea\",\"i\":\"5\",\"j\":\"p q\",\"k\":\"x\",\"l\":\"x\","
                              "\"m\":\"x\",\"n\":\"caf\u00e9\",\"o\":\"a\\\\b\",\"p\":\"Blue\","
                              "\"q\":\"x y\",\"r\":\"x\\u0001\"}");
    free(text);
    json_decref(src);
    map_close(m);
    config_free(cfg);
    unlink("/tmp/gw_map_trim.jq");
}

/* The gateway's own name cleaning and trimming (gw_clean_name,
 * gw_trim_space), which the flows apply before a mapping, give what the
 * library's gw_clean and gw_nonempty give. */
static void test_c_cleaning_as_the_library(void **state)
{
    (void)state;
    static const char *const texts[] = {"",
                                        " ",
                                        "a",
                                        "Koffie",
                                        " Koffie ",
                                        "a:b",
                                        "a\"b",
                                        "a  b",
                                        "a\tb",
                                        "a\nb",
                                        "a\rb",
                                        " : ",
                                        "::",
                                        "\u00a0x\u00a0",
                                        "x\u00a0 \u00a0",
                                        " \u00a0 x",
                                        "x \u3000 y",
                                        "\u2003",
                                        "a\vb",
                                        "\vx\v",
                                        "caf\u00e9 ",
                                        "T-shirt \u2013 deluxe",
                                        "a\\b",
                                        "x\x01",
                                        "  a  :  b  ",
                                        "\t\n",
                                        "\xc2\x85x\xc2\x85",
                                        "\u200bx\u200b",
                                        "\ufeffx",
                                        "\U0001F37A bier",
                                        "a \u00a0 b",
                                        ": x :",
                                        "\" x \"",
                                        "x \t\n y",
                                        "\u2028a\u2029",
                                        "\u00a0:\u00a0",
                                        "a:\u3000:b"};
    size_t n = sizeof texts / sizeof texts[0];
    struct gw_config *cfg;
    struct mapper *m;
    char err[512];
    assert_int_equal(open_own("/tmp/gw_map_clean.jq",
                              "def shown: if . == null then \"<null>\" else . end;\n"
                              "{clean: [.source.texts[] | gw_clean | shown],\n"
                              " trim: [.source.texts[] | gw_nonempty | shown]}\n",
                              "flows = customers\n", &cfg, &m, err, sizeof err),
                     0);
    json_t *src = json_pack("{s:[]}", "texts");
    for (size_t i = 0; i < n; i++)
        json_array_append_new(json_object_get(src, "texts"), json_string(texts[i]));
    json_t *out;
    assert_int_equal(
        map_run(m, &cfg->conns[0], MAP_CUSTOMERS_TO_QBO, src, NULL, &out, err, sizeof err), 0);
    for (size_t i = 0; i < n; i++) {
        char *clean = gw_clean_name(texts[i]);
        assert_string_equal(json_string_value(json_array_get(json_object_get(out, "clean"), i)),
                            clean ? clean : "<null>");
        free(clean);
        size_t start, len = gw_trim_space(texts[i], strlen(texts[i]), &start);
        char *trim = len ? strndup(texts[i] + start, len) : NULL;
        assert_string_equal(json_string_value(json_array_get(json_object_get(out, "trim"), i)),
                            trim ? trim : "<null>");
        free(trim);
    }
    json_decref(out);
    json_decref(src);
    map_close(m);
    config_free(cfg);
    unlink("/tmp/gw_map_clean.jq");
}

/* The products mapping back: what an Item says of its article, less what the
 * products mapping adds to it; nothing the article already says. */
static void test_items_back_to_articles(void **state)
{
    (void)state;
    struct gw_config *cfg = load("[connection.a]\nflows = products\nproducts_direction = both\n");
    struct mapper *m;
    char err[512];
    if (map_open(cfg, DIR, &m, err, sizeof err) != 0)
        fail_msg("%s", err);
    static const struct {
        const char *item, *existing, *want;
    } cases[] = {
        /* A taken name's suffix and the EAN line go; the text goes where it came from. */
        {"{\"Name\": \"Koffie zwart (1001)\", \"UnitPrice\": 2.5, \"PurchaseCost\": 0.4,"
         " \"SalesTaxIncluded\": true, \"Description\": \"Vers\\nEAN 871\"}",
         "{\"article\": {\"articleNumber\": 1001, \"description\": \" Koffie \","
         " \"barcode\": \"871\", \"invoiceText\": \"Oud\"}}",
         "{\"priceIncl\":\"2.50\",\"purchasePrice\":\"0.40\",\"description\":\"Koffie "
         "zwart\",\"invoiceText\":\"Vers\"}"},
        /* What the article says already (cleaned, or cut at 100) is left out. */
        {"{\"Name\": \"Koffie\", \"Description\": \"Koffie\\nEAN 871\"}",
         "{\"article\": {\"articleNumber\": 1001, \"description\": \"Koffie\\t\","
         " \"barcode\": \"871\"}}",
         "{}"},
        /* A variant's name is its product's, colour's and size's: not its description;
         * its product's line goes; a price without VAT is priceExcl, to the cent. */
        {"{\"Name\": \"Shirt \u2013 Rood / XL\", \"UnitPrice\": 1.995,"
         " \"SalesTaxIncluded\": false, \"Description\": \"Katoen\\nShirt\"}",
         "{\"article\": {\"articleNumber\": 7, \"colour\": \"Rood\", \"size\": \"XL\","
         " \"extraText\": \"Wol\"}, \"product\": {\"description\": \"Shirt\"}}",
         "{\"priceExcl\":\"2.00\",\"extraText\":\"Katoen\"}"},
        /* Whole amounts get their cents; below half a cent rounds down. */
        {"{\"UnitPrice\": 12.344, \"PurchaseCost\": 7}", "{\"article\": {\"articleNumber\": 8}}",
         "{\"priceIncl\":\"12.34\",\"purchasePrice\":\"7.00\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *item = json_loads(cases[i].item, 0, NULL);
        json_t *existing = json_loads(cases[i].existing, 0, NULL);
        json_t *want = json_loads(cases[i].want, 0, NULL), *out = NULL;
        assert_non_null(item);
        assert_non_null(existing);
        assert_int_equal(map_run(m, &cfg->conns[0], MAP_PRODUCTS_TO_MPLUS, item, existing, &out,
                                 err, sizeof err),
                         0);
        char *got = json_dumps(out, JSON_SORT_KEYS | JSON_COMPACT);
        char *exp = json_dumps(want, JSON_SORT_KEYS | JSON_COMPACT);
        if (!json_equal(out, want))
            fail_msg("case %zu: got %s, want %s", i, got, exp);
        free(got);
        free(exp);
        json_decref(item);
        json_decref(existing);
        json_decref(want);
        json_decref(out);
    }
    map_close(m);
    config_free(cfg);
}

static void test_bad_settings_table(void **state)
{
    (void)state;
    struct gw_config *cfg = load("[connection.a]\nflows = customers\ntax_code_by_country = NL\n");
    struct mapper *m;
    char err[512];
    assert_int_equal(map_open(cfg, DIR, &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "tax_code_by_country"));
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_company_and_person_relations),
        cmocka_unit_test(test_override_and_errors),
        cmocka_unit_test(test_programs_compiled_together),
        cmocka_unit_test(test_values_and_nulls),
        cmocka_unit_test(test_text_as_the_tree_writes),
        cmocka_unit_test(test_library_trims),
        cmocka_unit_test(test_c_cleaning_as_the_library),
        cmocka_unit_test(test_items_back_to_articles),
        cmocka_unit_test(test_bad_settings_table),
    };
    return cmocka_run_group_tests_name("map", tests, NULL, NULL);
}
