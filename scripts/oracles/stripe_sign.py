"""Sign Stripe webhook bodies with the official `stripe` package's own helper.

JSON on stdin: {"cases": [{"payload": str, "sign_with": [secret, ...], "offset": seconds
added to now (default 0), "scheme": "v1" (default) or "v0", "verify_with": secret}]}.
JSON on stdout: {"headers": [Stripe-Signature header, ...], "stripe_accepts": [bool, ...]}:
the header as Stripe would send it (one signature per signing secret), and whether
stripe.WebhookSignature.verify_header (tolerance 300 s) accepts it for `verify_with`.
"""

import json
import sys
import time

import stripe
from stripe import WebhookSignature


def main() -> None:
    cases = json.load(sys.stdin)["cases"]
    headers, accepts = [], []
    for case in cases:
        t = int(time.time()) + int(case.get("offset", 0))
        scheme = case.get("scheme", "v1")
        sigs = [
            WebhookSignature._compute_signature("%d.%s" % (t, case["payload"]), secret)
            for secret in case["sign_with"]
        ]
        header = ",".join(["t=%d" % t] + ["%s=%s" % (scheme, s) for s in sigs])
        headers.append(header)
        try:
            WebhookSignature.verify_header(
                case["payload"], header, case["verify_with"], tolerance=300
            )
            accepts.append(True)
        except stripe.SignatureVerificationError:
            accepts.append(False)
    json.dump({"headers": headers, "stripe_accepts": accepts}, sys.stdout)


if __name__ == "__main__":
    main()
