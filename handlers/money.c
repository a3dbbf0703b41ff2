/*
 * money.c - exact sales-line arithmetic (money.h).
 */
#include "money.h"

static __int128 pow10i(int n)
{
    __int128 p = 1;
    while (n-- > 0)
        p *= 10;
    return p;
}

/* n / d rounded half away from zero; d > 0. */
static __int128 div_round(__int128 n, __int128 d)
{
    __int128 q = (n < 0 ? -n : n) * 2 + d;
    q /= 2 * d;
    return n < 0 ? -q : q;
}

int64_t money_line_amount(int64_t qty, int qp, int64_t unit, int up)
{
    __int128 prod = (__int128)qty * unit; /* scaled by 10^(qp+up) */
    int shift = qp + up - 2;
    if (shift <= 0)
        return (int64_t)(prod * pow10i(-shift));
    return (int64_t)div_round(prod, pow10i(shift));
}

int money_unit_price(int64_t amount, int64_t qty, int qp, int64_t *unit, int *up)
{
    int64_t best = 0;
    for (int d = 2; d <= MONEY_UNIT_PLACES; d++) {
        /* unit/10^d ~ (amount/100) / (qty/10^qp) = amount * 10^(qp+d-2) / qty */
        __int128 num = (__int128)amount * pow10i(qp + d - 2);
        __int128 u = num / qty; /* truncated; try around it */
        for (int k = -1; k <= 2; k++) {
            int64_t cand = (int64_t)(u + k);
            if (money_line_amount(qty, qp, cand, d) == amount) {
                *unit = cand;
                *up = d;
                return 0;
            }
        }
        if (d == MONEY_UNIT_PLACES)
            best = (int64_t)div_round(num * (qty < 0 ? -1 : 1), qty < 0 ? -qty : qty);
    }
    *unit = best;
    *up = MONEY_UNIT_PLACES;
    return -1;
}
