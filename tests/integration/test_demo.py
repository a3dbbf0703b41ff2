#!/usr/bin/env python3
"""scripts/demo, as a new user runs it: both simulators and the gateway play
a shop day (with a 5 s Mplus outage instead of 30) and the report's figures
hold: every sale in QuickBooks once, the turnover equal to Mplus's to the
cent, the documents and customers the day makes, no event dead.

    /usr/bin/python3 tests/integration/test_demo.py GATEWAY_BINARY [unittest args]
"""

import os
import re
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = None


class Demo(unittest.TestCase):
    maxDiff = None

    def test_the_shop_day_report(self):
        env = dict(os.environ, GW_BIN=BINARY)
        p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "demo"), "--exit", "--outage", "5"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env, timeout=540, text=True)
        out = p.stdout
        self.assertEqual(p.returncode, 0, out)
        self.assertNotIn("still waiting", out)

        def figure(label):
            m = re.search(r"^  %s\s+(\d+)(?: \((\d+) voided\))?" % label, out, re.M)
            self.assertIsNotNone(m, "%s not in the report:\n%s" % (label, out))
            return int(m.group(1)), int(m.group(2) or 0)

        # 12 anonymous sales, a card sale, the pickup, 3 during the outage.
        self.assertEqual(figure("SalesReceipt"), (17, 0))
        self.assertEqual(figure("RefundReceipt"), (1, 0))
        # The split sale's (a Payment per method), the invoice's, the cancelled order's (voided).
        self.assertEqual(figure("Invoice"), (3, 1))
        self.assertEqual(figure("Payment"), (4, 0))          # the invoice's two parts, the split sale's two
        self.assertEqual(figure("customers")[0], 5)          # 3 relations, 1 new, the till's
        self.assertEqual(figure("items")[0], 7)
        self.assertIn("Bakkerij Van Dam", out)
        m = re.search(r"^Turnover incl\. VAT: Mplus (-?\d+\.\d\d), QuickBooks (-?\d+\.\d\d): equal to the cent$",
                      out, re.M)
        self.assertIsNotNone(m, out)
        self.assertEqual(m.group(1), m.group(2))
        events = dict((k, int(v)) for k, v in re.findall(r"(\w+) (\d+)", re.search(r"^Events: (.*)$", out,
                                                                                     re.M).group(1)))
        self.assertNotIn("dead", events, out)
        self.assertNotIn("retrying", events, out)
        self.assertGreater(events.get("done", 0), 40, out)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    BINARY = os.path.abspath(sys.argv.pop(1))
    unittest.main()
