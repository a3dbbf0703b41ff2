/*
 * money.h - exact sales-line arithmetic in integers: amounts are cents,
 * quantities and unit prices are scaled integers (value, decimal places).
 * No floating point anywhere.
 *
 * QuickBooks requires Amount = round(Qty x UnitPrice, 2) on every item line;
 * Mplus gives the line total itself (after discounts). money_unit_price finds
 * the unit price that makes QuickBooks' rule give Mplus's total.
 */
#ifndef GW_MONEY_H
#define GW_MONEY_H

#include <stdint.h>

/* The most decimal places of a unit price (QuickBooks keeps more; the books show 5). */
#define MONEY_UNIT_PLACES 5

/* round_half_away_from_zero(qty/10^qp * unit/10^up, 2 places), in cents. */
int64_t money_line_amount(int64_t qty, int qp, int64_t unit, int up);

/*
 * The unit price, with the fewest decimal places from 2 to MONEY_UNIT_PLACES,
 * for which money_line_amount(qty, qp, unit, up) == amount (cents). Returns
 * 0 with it, or -1 with the closest one at MONEY_UNIT_PLACES when none is
 * exact (the caller books the rest on a rounding line). qty must not be 0.
 */
int money_unit_price(int64_t amount, int64_t qty, int qp, int64_t *unit, int *up);

#endif
