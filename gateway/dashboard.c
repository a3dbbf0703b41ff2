/*
 * dashboard.c - the page, built from the same reports as `gateway status`
 * and `gateway events`. Every value from outside is HTML-escaped.
 */
#include "dashboard.h"
#include "report.h"

#include <jansson.h>
#include <string.h>

/* Text as HTML: the five characters that could change the markup are escaped. */
static void esc(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&#39;", out);
            break;
        default:
            fputc(*s, out);
        }
    }
}

static const char *str(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v && v[0] ? v : "";
}

static void cell(FILE *out, const char *text)
{
    fputs("<td>", out);
    esc(out, text);
    fputs("</td>", out);
}

int dashboard_render(struct store *st, const struct gw_config *cfg, FILE *out)
{
    char err[256];
    json_t *status = report_status(st, cfg, err, sizeof err);
    struct event_filter f = {-1, NULL, NULL, NULL, 100};
    json_t *events = report_events(st, &f, err, sizeof err);
    if (status == NULL || events == NULL) {
        json_decref(status);
        json_decref(events);
        return -1;
    }
    fputs("<!doctype html><html><head><meta charset=\"utf-8\">"
          "<meta http-equiv=\"refresh\" content=\"5\"><title>gateway</title><style>"
          "body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}"
          "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}"
          ".dead{color:#b00}.retrying{color:#b60}.done{color:#070}.skipped{color:#666}"
          "</style></head><body><h1>MplusKASSA &harr; QuickBooks gateway</h1>",
          out);
    fputs("<h2>Events</h2><table><tr>", out);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(status, "events"), k, v)
    {
        fprintf(out, "<th class=\"%s\">", k); /* state names are ours */
        esc(out, k);
        fprintf(out, "</th>");
    }
    fputs("</tr><tr>", out);
    json_object_foreach(json_object_get(status, "events"), k, v)
        fprintf(out, "<td>%lld</td>", (long long)json_integer_value(v));
    fputs("</tr></table>", out);
    if (json_integer_value(json_object_get(status, "inbox")) > 0)
        fprintf(out, "<p>%lld webhooks accepted in a burst are becoming events.</p>",
                (long long)json_integer_value(json_object_get(status, "inbox")));

    fputs("<h2>Connections</h2><table><tr><th>name</th><th>realm</th><th>flows</th>"
          "<th>QuickBooks</th><th>circuit</th><th>Mplus API</th><th>last error</th></tr>",
          out);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(status, "connections"), i, c)
    {
        fputs("<tr>", out);
        cell(out, str(c, "name"));
        cell(out, str(c, "realm_id"));
        cell(out, str(c, "flows"));
        cell(out,
             json_is_true(json_object_get(c, "authorised")) ? "authorised" : "needs authorisation");
        cell(out, str(c, "circuit"));
        cell(out, json_object_get(c, "mplus_login_refused_until") ? "login refused"
                                                                  : str(c, "mplus_api_version"));
        const char *e = str(c, "last_error");
        cell(out, e[0] ? e : str(c, "mplus_error"));
        fputs("</tr>", out);
    }
    fputs("</table><h2>Latest events</h2><table><tr><th>id</th><th>state</th><th>source</th>"
          "<th>connection</th><th>entity</th><th>id</th><th>operation</th><th>tries</th>"
          "<th>received</th><th>reason / error</th></tr>",
          out);
    json_t *e;
    json_array_foreach(events, i, e)
    {
        const char *state = str(e, "state");
        fprintf(out, "<tr class=\"");
        esc(out, state);
        fprintf(out, "\"><td>%lld</td>", (long long)json_integer_value(json_object_get(e, "id")));
        cell(out, state);
        cell(out, str(e, "source"));
        cell(out, str(e, "connection"));
        cell(out, str(e, "entity"));
        cell(out, str(e, "entity_id"));
        cell(out, str(e, "operation"));
        fprintf(out, "<td>%lld</td>",
                (long long)json_integer_value(json_object_get(e, "attempts")));
        cell(out, str(e, "received_at"));
        const char *why = str(e, "last_error");
        cell(out, why[0] ? why : str(e, "reason"));
        fputs("</tr>", out);
    }
    fputs("</table><p>Details: <code>gateway show ID</code> or /api/events/ID. "
          "Replay: <code>gateway replay</code> or POST /api/events/ID/replay.</p></body></html>\n",
          out);
    json_decref(status);
    json_decref(events);
    return 0;
}
