/*
 * flows.c - the table of flows and how an event finds its handler.
 */
#include "event.h"
#include "handler.h"

#include <string.h>

/* Events no enabled flow takes end skipped, "no flow". */
static const struct flow shipped[] = {
    {"customers", GW_FLOW_CUSTOMERS, GW_SRC_MPLUS_POLL, "relation", customers_from_mplus, NULL},
    {"customers", GW_FLOW_CUSTOMERS, "quickbooks", "Customer", customers_from_qbo, NULL},
    {"sales", GW_FLOW_SALES, GW_SRC_MPLUS_POLL, "receipt", sales_from_mplus, NULL},
    {"sales", GW_FLOW_SALES, GW_SRC_MPLUS_POLL, "invoice", sales_from_mplus, NULL},
    {"sales", GW_FLOW_SALES, GW_SRC_MPLUS_POLL, "order", sales_from_mplus, NULL},
    {"sales", GW_FLOW_SALES, GW_SRC_MPLUS_POLL, "summary", summary_from_mplus, NULL},
    {"products", GW_FLOW_PRODUCTS, GW_SRC_MPLUS_POLL, "article", products_from_mplus, NULL},
    {"products", GW_FLOW_PRODUCTS, GW_SRC_MPLUS_POLL, "article_group", products_from_mplus, NULL},
    {"products", GW_FLOW_PRODUCTS, "quickbooks", "Item", products_from_qbo, config_products_back},
    {"stock", GW_FLOW_STOCK, GW_SRC_MPLUS_POLL, "stock", stock_from_mplus, NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};

bool flow_on(const struct flow *f, const struct gw_connection *c)
{
    return (c->flows & f->bit) != 0 && (f->wanted == NULL || f->wanted(c));
}

static bool takes(const struct flow *f, const char *source, const char *entity,
                  const struct gw_connection *c)
{
    if (!flow_on(f, c))
        return false;
    if (f->source != NULL && (source == NULL || strcmp(f->source, source) != 0))
        return false;
    return f->entity == NULL || (entity != NULL && strcmp(f->entity, entity) == 0);
}

const struct flow *flow_for(json_t *rec, const struct gw_connection *conn, const struct flow *extra)
{
    if (conn == NULL)
        return NULL;
    const char *source = json_string_value(json_object_get(rec, "source"));
    const char *entity = json_string_value(json_object_get(rec, "entity"));
    /* A change found by a CDC sweep goes where its webhook would have gone. */
    if (source != NULL && strcmp(source, GW_SRC_QBO_CDC) == 0)
        source = "quickbooks";
    for (const struct flow *f = extra; f && f->name; f++)
        if (takes(f, source, entity, conn))
            return f;
    for (const struct flow *f = shipped; f->name; f++)
        if (takes(f, source, entity, conn))
            return f;
    return NULL;
}

const struct flow *flow_table(void)
{
    return shipped;
}
