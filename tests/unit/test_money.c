/* Unit tests: exact sales-line arithmetic (handlers/money.c) and the exact
 * numbers of QuickBooks request bodies (qbo_exact_numbers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "money.h"
#include "qbo.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* QuickBooks' rule, written out independently: round half up (away from
 * zero) of qty x unit to cents, from the digits. */
static int64_t qbo_rule(int64_t qty, int qp, int64_t unit, int up)
{
    __int128 p = (__int128)qty * unit;
    int neg = p < 0;
    if (neg)
        p = -p;
    int shift = qp + up - 2;
    __int128 div = 1;
    for (int i = 0; i < shift; i++)
        div *= 10;
    __int128 q = p / div, rem = p % div;
    if (rem * 2 >= div)
        q++;
    return (int64_t)(neg ? -q : q);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_known_lines(void **state)
{
    (void)state;
    int64_t unit;
    int up;
    /* 0.530 kg at 18.77/kg = 9.95 (9.9481 rounds up). */
    assert_int_equal(money_unit_price(995, 530, 3, &unit, &up), 0);
    assert_int_equal(money_line_amount(530, 3, unit, up), 995);
    assert_int_equal(qbo_rule(530, 3, unit, up), 995);
    /* 3 x with a 10 % discount: 3 x 2.50 - 0.75 = 6.75, unit 2.25. */
    assert_int_equal(money_unit_price(675, 3, 0, &unit, &up), 0);
    assert_int_equal(unit, 225);
    assert_int_equal(up, 2);
    /* 7 x 2.80 - 0.33 = 19.27: no 2-place price does it, more places do. */
    assert_int_equal(money_unit_price(1927, 7, 0, &unit, &up), 0);
    assert_true(up > 2);
    assert_int_equal(qbo_rule(7, 0, unit, up), 1927);
    /* Credits are negative. */
    assert_int_equal(money_unit_price(-995, -530, 3, &unit, &up), 0);
    assert_int_equal(qbo_rule(-530, 3, unit, up), -995);
    assert_true(unit > 0);
}

/* A line as the gateway sends it: Qty and UnitPrice as scaled integers. */
struct sent_line {
    int64_t qty, unit;
    int qp, up;
};

/*
 * The document total QuickBooks works out from what was sent, independently
 * of the gateway's own sums: each line by QuickBooks' rule, plus the
 * rounding line (Qty 1, UnitPrice = its amount). Whether it is Mplus's total.
 */
static bool qbo_total_is(const struct sent_line *lines, int n, int64_t rounding,
                         int64_t mplus_total)
{
    int64_t total = qbo_rule(1, 0, rounding, 2);
    for (int i = 0; i < n; i++)
        total += qbo_rule(lines[i].qty, lines[i].qp, lines[i].unit, lines[i].up);
    return total == mplus_total;
}

/* Over random quantities, prices and discounts: every booked line follows
 * QuickBooks' rule, and the total QuickBooks works out from the lines and the
 * rounding line sent is the Mplus total of the document, to the cent. The
 * check is shown to fail on a document sent wrong (a unit price one step off,
 * the rounding line left out). */
static void test_documents_add_up(void **state)
{
    (void)state;
    int exact = 0, lines = 0, caught = 0, mutated = 0;
    for (int doc = 0; doc < 20000; doc++) {
        int n = 1 + (int)(next_rand() % 8), sent = 0;
        struct sent_line out[8];
        int64_t mplus_total = 0, booked = 0;
        for (int i = 0; i < n; i++) {
            int qp = (int)(next_rand() % 4); /* 0..3 decimals */
            int64_t scale = qp == 0 ? 1 : qp == 1 ? 10 : qp == 2 ? 100 : 1000;
            /* up to 20 units, now and then up to 50,000 (a wholesale line) */
            int64_t most = next_rand() % 50 == 0 ? 50000 : 20;
            int64_t qty = 1 + (int64_t)(next_rand() % (uint64_t)(most * scale));
            if (next_rand() % 10 == 0)
                qty = -qty;                                  /* a returned line */
            int64_t price = (int64_t)(next_rand() % 200000); /* up to 2000.00 */
            int64_t gross = qbo_rule(qty, qp, price, 2);
            int64_t discount = next_rand() % 3 == 0 ? (int64_t)(next_rand() % 500) : 0;
            if (gross < 0)
                discount = -discount;
            int64_t total = gross - discount;
            if (total == 0)
                continue;
            int64_t unit;
            int up;
            int rc = money_unit_price(total, qty, qp, &unit, &up);
            int64_t amount = money_line_amount(qty, qp, unit, up);
            assert_int_equal(amount, qbo_rule(qty, qp, unit, up));
            if (rc == 0) {
                assert_int_equal(amount, total);
                exact++;
            } else {
                /* Only above 1,000 units can no 5-place price hit the cent: the
                 * closest misses by at most half a price step times the
                 * quantity, and the rounding line takes the rest. */
                assert_true(llabs(qty) >= 1000 * scale);
                assert_true(llabs(amount - total) <= 1 + llabs(qty) / (2000 * scale));
            }
            lines++;
            mplus_total += total;
            booked += amount;
            out[sent++] = (struct sent_line){qty, unit, qp, up};
        }
        int64_t rounding = mplus_total - booked; /* what sales.c puts on the rounding line */
        assert_true(qbo_total_is(out, sent, rounding, mplus_total));
        /* Mutations of what is sent must be caught. */
        if (sent > 0) {
            struct sent_line saved = out[0];
            out[0].unit += out[0].unit >= 0 ? 1 : -1;
            if (qbo_rule(out[0].qty, out[0].qp, out[0].unit, out[0].up) !=
                qbo_rule(saved.qty, saved.qp, saved.unit, saved.up)) {
                mutated++;
                caught += !qbo_total_is(out, sent, rounding, mplus_total);
            }
            out[0] = saved;
        }
        if (rounding != 0) {
            mutated++;
            caught += !qbo_total_is(out, sent, 0, mplus_total);
        }
    }
    /* Nearly every line needs no rounding line at all. */
    assert_true(exact * 100 >= lines * 97);
    assert_true(mutated > 1000);
    assert_int_equal(caught, mutated);
}

static void exact_is(const char *in, const char *want)
{
    char buf[512];
    strcpy(buf, in);
    qbo_exact_numbers(buf);
    assert_string_equal(buf, want);
}

static void test_exact_numbers(void **state)
{
    (void)state;
    exact_is("{\"Amount\":\"9.95\",\"Qty\":\"0.530\",\"UnitPrice\":\"18.7736\"}",
             "{\"Amount\":9.95,\"Qty\":0.530,\"UnitPrice\":18.7736}");
    exact_is("{\"Amount\":\"-12.50\"}", "{\"Amount\":-12.50}");
    /* Only the decimal keys, only plain decimals. */
    exact_is("{\"DocNumber\":\"123\",\"Amount\":\"1e5\",\"TotalTax\":\"1.\"}",
             "{\"DocNumber\":\"123\",\"Amount\":\"1e5\",\"TotalTax\":\"1.\"}");
    /* A key's name inside a string value stays text. */
    exact_is("{\"Description\":\"\\\"Amount\\\":\\\"5\\\"\"}",
             "{\"Description\":\"\\\"Amount\\\":\\\"5\\\"\"}");
    exact_is("{\"XAmount\":\"5\",\"Amount\":\"\"}", "{\"XAmount\":\"5\",\"Amount\":\"\"}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_lines),
        cmocka_unit_test(test_documents_add_up),
        cmocka_unit_test(test_exact_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
