"""Compatibility test: a PyPI Alipay SDK (pinned, unmodified) against a running paysim sandbox,
configured only from the sandbox's sandbox.json.

Usage: python compat.py <path/to/sandbox.json> <client>
  client = python-alipay-sdk   (community, `from alipay import AliPay`;
                                requirements-python-alipay-sdk.txt)
         | alipay-sdk-python   (official, `alipay.aop.api`; requirements-alipay-sdk-python.txt)

Both packages install a top-level `alipay` package, so each needs its own virtualenv
(tests/sdk/run.sh makes one per client under its temporary data dir). By hand:
  python3 -m venv .venv-<client> && .venv-<client>/bin/pip install -r requirements-<client>.txt
  .venv-<client>/bin/python compat.py <sandbox.json> <client> Exits non-zero if any expectation failed; an SDK call
that raises is recorded as a failed expectation and the remaining steps still run.
"""
import html
import http.client
import http.server
import json
import os
import re
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from importlib import metadata

CLIENTS = ("python-alipay-sdk", "alipay-sdk-python")

if len(sys.argv) != 3 or sys.argv[2] not in CLIENTS:
    print(f"usage: python compat.py <sandbox.json> <{'|'.join(CLIENTS)}>", file=sys.stderr)
    sys.exit(2)
sandbox_path, client_name = sys.argv[1], sys.argv[2]
with open(sandbox_path, encoding="utf-8") as f:
    sandbox = json.load(f)
alipay = (sandbox.get("channels") or {}).get("alipay")
if not alipay:
    raise SystemExit("sandbox.json has no channels.alipay")


def read(file):
    # Key paths in sandbox.json are relative to the directory paysim was started in.
    with open(os.path.join(os.getcwd(), file), encoding="utf-8") as f:
        return f.read()


failures = 0


def check(name, condition, detail=None):
    global failures
    if condition:
        print(f"ok   {name}")
    else:
        failures += 1
        print(f"FAIL {name}: {'' if detail is None else json.dumps(detail, ensure_ascii=False, default=str)}")


def attempt(name, fn):
    """Run one SDK call; an exception is a failed expectation (with the SDK's message)."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - any SDK error is a finding
        check(name, False, f"{type(e).__name__}: {e}")
        traceback.print_exc(limit=3, file=sys.stdout)
        return None


def raises(fn):
    """The exception fn raises (None if it returns)."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return e
    return None


# A small receiver for the simulator's notifications; answers the exact body `success`.
notifications = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode("utf-8")
        notifications.append(dict(urllib.parse.parse_qsl(body, keep_blank_values=True)))
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", "7")
        self.end_headers()
        self.wfile.write(b"success")

    def log_message(self, *args):
        pass


receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
notify_url = f"http://127.0.0.1:{receiver.server_address[1]}/notify"
return_url = "http://127.0.0.1:9/return"


def control_request(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{alipay['control_url']}{path}", data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8")


def control(out_trade_no, action):
    status, text = control_request("POST", f"/trades/{out_trade_no}/actions", {"action": action})
    check(f"control plane {action} {out_trade_no}", 200 <= status < 300, text)


def trade_view(out_trade_no):
    status, text = control_request("GET", f"/trades/{out_trade_no}")
    return json.loads(text) if status == 200 else {"http_status": status, "body": text}


def arm_fault(target, fault):
    status, text = control_request("POST", "/faults", {"target": target, "fault": fault, "times": 1})
    check(f"control plane arms {fault} on {target}", status == 201, text)


def open_url(url, data=None):
    """What a browser does with the SDK's page-pay URL / form: (status, content-type, text)."""
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode("utf-8", "replace")


def attribute_value(raw):
    """Decode an HTML attribute value as a browser does. Only references closed by `;` are
    decoded: the official SDK leaves `&` unescaped in the form's action, and `&notify_url=` must
    not turn into `¬ify_url=` (html.unescape would decode the legacy `&not`)."""
    return re.sub(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);",
                  lambda m: html.unescape(m.group(0)), raw)


# ---------------------------------------------------------------------------------------------
# Per-client adapters. Each call goes through the SDK's own public API and returns the response
# node as a dict (after the SDK verified its signature); `verify_notification` uses the SDK's
# own helper.


class Community:
    """PyPI python-alipay-sdk: GET with everything in the query, biz_content `\\uXXXX`-escaped."""

    def __init__(self, alipay_public_key):
        from alipay import AliPay
        from alipay.exceptions import AliPayValidationError
        self.AliPayValidationError = AliPayValidationError
        self.sdk = AliPay(
            appid=alipay["app_id"],
            app_notify_url=None,
            app_private_key_string=read(alipay["app_private_key_pkcs1_file"]),
            alipay_public_key_string=alipay_public_key,
            sign_type="RSA2",
        )
        # No gateway option: the documented way is to replace the attribute (notes B2/B4).
        self.sdk._gateway = alipay["gateway_url"]

    def precreate(self, out_trade_no, amount, subject):
        return self.sdk.api_alipay_trade_precreate(subject=subject, out_trade_no=out_trade_no,
                                                   total_amount=amount, notify_url=notify_url)

    def query(self, out_trade_no):
        return self.sdk.api_alipay_trade_query(out_trade_no=out_trade_no)

    def refund(self, out_trade_no, amount, out_request_no):
        return self.sdk.api_alipay_trade_refund(amount, out_trade_no=out_trade_no,
                                                out_request_no=out_request_no)

    def refund_query(self, out_trade_no, out_request_no):
        return self.sdk.api_alipay_trade_fastpay_refund_query(out_request_no, out_trade_no=out_trade_no)

    def close(self, out_trade_no):
        return self.sdk.api_alipay_trade_close(out_trade_no=out_trade_no)

    def bill_url(self, bill_date):
        return self.sdk.server_api("alipay.data.dataservice.bill.downloadurl.query",
                                   {"bill_type": "trade", "bill_date": bill_date})

    def page_pay_requests(self, out_trade_no, amount, subject):
        order_string = self.sdk.api_alipay_trade_page_pay(subject, out_trade_no, amount,
                                                          return_url=return_url, notify_url=notify_url)
        return [("api_alipay_trade_page_pay URL (GET)", self.sdk._gateway + "?" + order_string, None)]

    def verify_notification(self, notification):
        data = dict(notification)
        signature = data.pop("sign")
        return self.sdk.verify(data, signature)

    def is_signature_error(self, e):
        return isinstance(e, self.AliPayValidationError)


class Official:
    """PyPI alipay-sdk-python: POST (absolute-form target), biz_content with sorted keys, raw UTF-8."""

    def __init__(self, alipay_public_key):
        from alipay.aop.api import AlipayClientConfig as config_module
        from alipay.aop.api import DefaultAlipayClient as client_module
        from alipay.aop.api.exception.Exception import ResponseException
        from alipay.aop.api.util import SignatureUtils
        from alipay.aop.api.util import WebUtils
        self.ResponseException = ResponseException
        self.SignatureUtils = SignatureUtils

        # Documented workaround (notes B4): the SDK's get_http_connection ignores the URL's port
        # (hard-codes 80/443, then raises TypeError concatenating the int port). Replace it with a
        # port-aware equivalent that keeps the SDK's absolute-form request target.
        def get_http_connection(url, query_string, timeout):
            parts = urllib.parse.urlparse(url)
            cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            connection = cls(host=parts.hostname, port=parts.port, timeout=timeout)
            return f"{parts.scheme}://{parts.netloc}{parts.path}?{query_string}", connection

        WebUtils.get_http_connection = get_http_connection

        config = config_module.AlipayClientConfig()
        config.server_url = alipay["gateway_url"]
        config.app_id = alipay["app_id"]
        config.app_private_key = read(alipay["app_private_key_pkcs1_file"])  # PKCS#1 only
        config.alipay_public_key = alipay_public_key
        config.sign_type = "RSA2"
        self.alipay_public_key = alipay_public_key
        self.sdk = client_module.DefaultAlipayClient(alipay_client_config=config)

    def _execute(self, api, model_fields, notify=False):
        """api e.g. 'AlipayTradeQuery': <api>Model, <api>Request, <api>Response from the SDK."""
        model = getattr(__import__(f"alipay.aop.api.domain.{api}Model", fromlist=["x"]), f"{api}Model")()
        for key, value in model_fields.items():
            setattr(model, key, value)
        request = getattr(__import__(f"alipay.aop.api.request.{api}Request", fromlist=["x"]),
                          f"{api}Request")(biz_model=model)
        if notify:
            request.notify_url = notify_url
        text = self.sdk.execute(request)  # raises ResponseException unless the signature verifies
        response = getattr(__import__(f"alipay.aop.api.response.{api}Response", fromlist=["x"]),
                           f"{api}Response")()
        response.parse_response_content(text)
        node = json.loads(text)
        node["_parsed"] = response
        return node

    def precreate(self, out_trade_no, amount, subject):
        return self._execute("AlipayTradePrecreate", {"out_trade_no": out_trade_no, "total_amount": amount,
                                                      "subject": subject}, notify=True)

    def query(self, out_trade_no):
        return self._execute("AlipayTradeQuery", {"out_trade_no": out_trade_no})

    def refund(self, out_trade_no, amount, out_request_no):
        return self._execute("AlipayTradeRefund", {"out_trade_no": out_trade_no, "refund_amount": amount,
                                                   "out_request_no": out_request_no})

    def refund_query(self, out_trade_no, out_request_no):
        return self._execute("AlipayTradeFastpayRefundQuery", {"out_trade_no": out_trade_no,
                                                               "out_request_no": out_request_no})

    def close(self, out_trade_no):
        return self._execute("AlipayTradeClose", {"out_trade_no": out_trade_no})

    def bill_url(self, bill_date):
        return self._execute("AlipayDataDataserviceBillDownloadurlQuery",
                             {"bill_type": "trade", "bill_date": bill_date})

    def _page_request(self, out_trade_no, amount, subject):
        from alipay.aop.api.domain.AlipayTradePagePayModel import AlipayTradePagePayModel
        from alipay.aop.api.request.AlipayTradePagePayRequest import AlipayTradePagePayRequest
        model = AlipayTradePagePayModel()
        model.out_trade_no = out_trade_no
        model.total_amount = amount
        model.subject = subject
        model.product_code = "FAST_INSTANT_TRADE_PAY"
        request = AlipayTradePagePayRequest(biz_model=model)
        request.notify_url = notify_url
        request.return_url = return_url
        return request

    def page_pay_requests(self, out_trade_no, amount, subject):
        url = self.sdk.page_execute(self._page_request(out_trade_no, amount, subject), http_method="GET")
        # The default (POST) builds an auto-submitting form; submit it like a browser would.
        form = self.sdk.page_execute(self._page_request(out_trade_no, amount, subject))
        action = attribute_value(re.search(r'<form[^>]*action="([^"]*)"', form).group(1))
        fields = {attribute_value(k): attribute_value(v)
                  for k, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', form)}
        body = urllib.parse.urlencode(fields).encode()
        return [("page_execute URL (GET)", url, None), ("page_execute form (POST)", action, body)]

    def verify_notification(self, notification):
        # No notify helper in this SDK: build the string with its get_sign_content (sorted k=v),
        # without sign and sign_type, and check it with its verify_with_rsa (raises on mismatch).
        params = {k: v for k, v in notification.items() if k not in ("sign", "sign_type") and v != ""}
        message = self.SignatureUtils.get_sign_content(params).encode("utf-8")
        try:
            return self.SignatureUtils.verify_with_rsa(self.alipay_public_key, message, notification["sign"])
        except Exception as e:  # noqa: BLE001 - rsa.VerificationError on a bad signature
            if type(e).__name__ == "VerificationError":
                return False
            raise

    def is_signature_error(self, e):
        return isinstance(e, self.ResponseException) and "sign verify failed" in str(e)


# ---------------------------------------------------------------------------------------------

version = metadata.version(client_name)
print(f"{client_name} {version}")
alipay_public_key = read(alipay["alipay_public_key_file"])
sdk = (Community if client_name == "python-alipay-sdk" else Official)(alipay_public_key)


def field(node, name):
    return None if node is None else node.get(name)


run = f"{int(time.time() * 1000)}"
tag = "pyc" if client_name == "python-alipay-sdk" else "pyo"
trade_a = f"{tag}_a_{run}"
trade_b = f"{tag}_b_{run}"
trade_p = f"{tag}_p_{run}"
# Non-ASCII (incl. a non-BMP character): python-alipay-sdk sends `\uXXXX` escapes (surrogate
# pairs for the emoji) and signs them escaped; alipay-sdk-python sends raw UTF-8, keys sorted.
subject_a = "compat 测试 Python 🧾"

# precreate → buyer pays → query
pre = attempt("precreate", lambda: sdk.precreate(trade_a, "88.88", subject_a))
check("precreate answers 10000 with a qr_code (response signature verified by the SDK)",
      field(pre, "code") == "10000" and isinstance(field(pre, "qr_code"), str), pre)
if client_name == "alipay-sdk-python" and pre is not None:
    check("SDK response class parses qr_code", pre["_parsed"].qr_code == pre.get("qr_code")
          and pre["_parsed"].is_success(), pre)
control(trade_a, "pay")
paid = attempt("query", lambda: sdk.query(trade_a))
check("query shows TRADE_SUCCESS", field(paid, "code") == "10000" and field(paid, "trade_status") == "TRADE_SUCCESS", paid)
check("query echoes the amount", field(paid, "total_amount") == "88.88", paid)

# the SDK really verifies response signatures: a response signed over other bytes is refused
arm_fault("alipay.trade.query", "bad_response_signature")
error = raises(lambda: sdk.query(trade_a))
check("SDK rejects a response with a bad signature", error is not None and sdk.is_signature_error(error),
      f"{type(error).__name__}: {error}" if error else "no exception")

# partial refund → repeat → refund query → over-refund
refund = attempt("refund", lambda: sdk.refund(trade_a, "10.00", f"r1_{run}"))
check("partial refund moves money",
      field(refund, "code") == "10000" and field(refund, "fund_change") == "Y" and field(refund, "refund_fee") == "10.00",
      refund)
again = attempt("repeated refund", lambda: sdk.refund(trade_a, "10.00", f"r1_{run}"))
check("repeated out_request_no is idempotent (fund_change N)",
      field(again, "code") == "10000" and field(again, "fund_change") == "N", again)
refund_query = attempt("refund query", lambda: sdk.refund_query(trade_a, f"r1_{run}"))
check("refund query shows REFUND_SUCCESS",
      field(refund_query, "code") == "10000" and field(refund_query, "refund_status") == "REFUND_SUCCESS", refund_query)
over = attempt("over-refund", lambda: sdk.refund(trade_a, "100.00", f"r2_{run}"))
check("over-refund is refused with a signed ACQ answer",
      field(over, "code") == "40004" and field(over, "sub_code") == "ACQ.REASON_TRADE_REFUND_FEE_ERR", over)
if client_name == "alipay-sdk-python" and over is not None:
    check("SDK response class reports the failure", not over["_parsed"].is_success()
          and over["_parsed"].sub_code == "ACQ.REASON_TRADE_REFUND_FEE_ERR", over)

# close of a second trade (the buyer scanned, then the merchant closes)
pre_b = attempt("second precreate", lambda: sdk.precreate(trade_b, "1.00", "待关闭 to be closed"))
check("second precreate", field(pre_b, "code") == "10000", pre_b)
control(trade_b, "scan")
closed = attempt("close", lambda: sdk.close(trade_b))
check("close answers 10000", field(closed, "code") == "10000", closed)
closed_query = attempt("query closed", lambda: sdk.query(trade_b))
check("closed trade queries TRADE_CLOSED", field(closed_query, "trade_status") == "TRADE_CLOSED", closed_query)

# bill download URL (yesterday, Beijing time)
yesterday = (datetime.now(timezone.utc) + timedelta(hours=8) - timedelta(days=1)).strftime("%Y-%m-%d")
bill = attempt("bill download URL", lambda: sdk.bill_url(yesterday))
check("bill download URL or a signed isp.bill_not_exist",
      (field(bill, "code") == "10000" and isinstance(field(bill, "bill_download_url"), str))
      or field(bill, "sub_code") == "isp.bill_not_exist", bill)

# page pay: the URL / form the SDK builds, opened by a browser, shows the mock's cashier
subject_p = "网页支付 compat"
pages = attempt("page pay builder", lambda: sdk.page_pay_requests(trade_p, "66.60", subject_p)) or []
for name, url, body in pages:
    opened = attempt(f"{name} request", lambda: open_url(url, body))
    if opened is None:
        continue
    status, content_type, text = opened
    check(f"{name} opens the cashier (200, HTML, amount and subject shown)",
          status == 200 and "text/html" in content_type and "66.60" in text and subject_p in text
          and "isv.invalid-signature" not in text,
          {"url": url, "status": status, "content_type": content_type, "body": text[:600]})
if pages:
    view = trade_view(trade_p)
    check("the cashier created the page trade (WAIT_BUYER_PAY)",
          view.get("state") == "WAIT_BUYER_PAY" and view.get("product") == "page", view)

# the notification the simulator delivered verifies with the SDK's own checker
deadline = time.time() + 15
while not any(n.get("out_trade_no") == trade_a for n in notifications) and time.time() < deadline:
    time.sleep(0.1)
notification = next((n for n in notifications if n.get("out_trade_no") == trade_a), None)
check("a notification arrived for the paid trade", notification is not None, notifications)
if notification:
    check("notification carries the decoded non-ASCII subject", notification.get("subject") == subject_a, notification)
    verified = attempt("notification verification", lambda: sdk.verify_notification(notification))
    check("SDK notification verification accepts the notification", verified is True, notification)
    forged = {**notification, "total_amount": "0.01"}
    rejected = attempt("tampered notification verification", lambda: sdk.verify_notification(forged))
    check("SDK notification verification rejects a tampered copy", rejected is False, forged)

receiver.shutdown()
if failures > 0:
    print(f"{failures} expectation(s) failed")
    sys.exit(1)
print(f"{client_name} compatibility: all expectations met")
