#!/usr/bin/env python3
"""Golden vectors for the Alipay channel, produced by an independent tool: the `openssl` CLI.

Python only assembles the documented signing strings (sorted `k=v` joined by `&`) and writes
JSON; every signature comes from `openssl dgst -sha256 -sign`. RSA PKCS#1 v1.5 signatures are
deterministic, so re-running this script reproduces the committed files byte for byte; CI does
exactly that and compares.

Usage: generate.py [OUTPUT_DIR]   (default: this script's directory)
"""
import base64
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.path.join(HERE, "keys")


def sign(text: str, key_file: str) -> str:
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", os.path.join(KEYS, key_file)],
        input=text.encode("utf-8"),
        capture_output=True,
        check=True,
    ).stdout
    return base64.b64encode(signature).decode("ascii")


def sign_content(params: dict, exclude: tuple) -> str:
    """Sorted by key (byte order), `sign` (and for notifications `sign_type`) and empty values dropped."""
    pairs = sorted((k, v) for k, v in params.items() if k not in exclude and v != "")
    return "&".join(f"{k}={v}" for k, v in pairs)


def form_encode(params: dict) -> str:
    from urllib.parse import quote

    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())


def request_vector(name: str, params: dict) -> dict:
    content = sign_content(params, ("sign",))
    return {
        "description": f"{name}: a request signed with keys/app_private_pkcs8.pem; verify with keys/app_public.pem",
        "params": params,
        "sign_content": content,
        "sign": sign(content, "app_private_pkcs8.pem"),
    }


def response_vector(method: str, node: str) -> dict:
    node_name = method.replace(".", "_") + "_response"
    signature = sign(node, "alipay_private_pkcs8.pem")
    body = '{"' + node_name + '":' + node + ',"sign":"' + signature + '"}'
    return {
        "description": f"{method}: a response signed over the exact node text with keys/alipay_private_pkcs8.pem",
        "method": method,
        "node": node,
        "sign": signature,
        "body": body,
    }


def notify_vector(params: dict) -> dict:
    content = sign_content(params, ("sign", "sign_type"))
    signed = dict(params)
    signed["sign"] = sign(content, "alipay_private_pkcs8.pem")
    return {
        "description": "trade_status_sync notification signed over sorted params without sign and sign_type",
        "params": signed,
        "sign_content": content,
        "sign": signed["sign"],
        "form_body": form_encode(signed),
    }


def cert_sn(cert_file: str) -> str:
    """Alipay's certificate SN: md5_hex(issuer DN in RFC 2253 order + decimal serial), read
    with the openssl CLI."""
    import hashlib

    out = subprocess.run(
        ["openssl", "x509", "-in", os.path.join(HERE, "certs", cert_file), "-noout", "-issuer", "-serial",
         "-nameopt", "RFC2253"],
        capture_output=True, check=True, text=True,
    ).stdout
    fields = dict(line.split("=", 1) for line in out.strip().splitlines())
    return hashlib.md5((fields["issuer"] + str(int(fields["serial"], 16))).encode("utf-8")).hexdigest()


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else HERE
    os.makedirs(out, exist_ok=True)
    common = {
        "app_id": "2021000000000001",
        "charset": "utf-8",
        "format": "JSON",
        "notify_url": "http://127.0.0.1:8080/notify/alipay",
        "sign_type": "RSA2",
        "timestamp": "2026-11-25 17:59:37",
        "version": "1.0",
    }
    vectors = {
        "request_precreate.json": request_vector(
            "alipay.trade.precreate",
            dict(common, method="alipay.trade.precreate",
                 biz_content='{"out_trade_no":"ord_vector0000000000000001","subject":"demo 中文","total_amount":"88.88"}'),
        ),
        "request_query_escaped.json": request_vector(
            "alipay.trade.query (biz_content with \\uXXXX escapes and an empty param)",
            dict(common, method="alipay.trade.query", notify_url="", alipay_sdk="python-alipay-sdk",
                 biz_content='{"out_trade_no": "ord_vector0000000000000001", "subject": "\\u4e2d\\u6587"}'),
        ),
        "response_precreate.json": response_vector(
            "alipay.trade.precreate",
            '{"code":"10000","msg":"Success","out_trade_no":"ord_vector0000000000000001","qr_code":"https:\\/\\/qr.alipay.com\\/bax03431ljhokirwl38f00a7"}',
        ),
        "response_refund_error.json": response_vector(
            "alipay.trade.refund",
            '{"code":"40004","msg":"Business Failed","sub_code":"ACQ.REASON_TRADE_REFUND_FEE_ERR","sub_msg":"退款金额无效","out_trade_no":"ord_vector0000000000000001","refund_fee":"0.00","send_back_fee":"0.00"}',
        ),
        "notify_trade_success.json": notify_vector({
            "app_id": "2021000000000001",
            "auth_app_id": "2021000000000001",
            "buyer_id": "2088102116773037",
            "buyer_pay_amount": "88.88",
            "charset": "utf-8",
            "fund_bill_list": '[{"amount":"88.88","fundChannel":"ALIPAYACCOUNT"}]',
            "gmt_create": "2026-11-25 17:59:40",
            "gmt_payment": "2026-11-25 17:59:47",
            "invoice_amount": "88.88",
            "notify_id": "2026112500222175947012345678901234",
            "notify_time": "2026-11-25 17:59:48",
            "notify_type": "trade_status_sync",
            "out_trade_no": "ord_vector0000000000000001",
            "point_amount": "0.00",
            "receipt_amount": "88.88",
            "seller_id": "2088102119685838",
            "sign_type": "RSA2",
            "subject": "demo 中文",
            "total_amount": "88.88",
            "trade_no": "2026112522001400001000000001",
            "trade_status": "TRADE_SUCCESS",
            "version": "1.0",
        }),
    }
    app_sn = cert_sn("app_cert_public_key_2021000000000001.crt")
    alipay_sn = cert_sn("alipay_cert_public_key_rsa2.crt")
    root_sn = cert_sn("alipay_root_cert.crt")
    vectors["cert_sns.json"] = {
        "description": "certificate SNs: md5(issuer RFC 2253 DN + decimal serial); the root SN joins the SNs of the RSA certificates of the root bundle with _",
        "app_cert_sn": app_sn,
        "alipay_cert_sn": alipay_sn,
        "alipay_root_cert_sn": root_sn,
    }
    vectors["request_query_cert_mode.json"] = request_vector(
        "alipay.trade.query in public-key-certificate mode",
        dict(common, method="alipay.trade.query", notify_url="", app_cert_sn=app_sn, alipay_root_cert_sn=root_sn,
             biz_content='{"out_trade_no":"ord_vector0000000000000001"}'),
    )
    for name, vector in vectors.items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(vector, f, ensure_ascii=False, indent=2, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
