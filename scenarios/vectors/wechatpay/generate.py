#!/usr/bin/env python3
"""Golden vectors for the WeChat Pay APIv3 channel, produced by independent tools.

Python only assembles the documented signing messages (`shared/protocols/wechatpay.md` A1, A2,
A5) and writes JSON:

* requests:   `METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n` (BODY empty for a GET);
* responses and notifications: `TIMESTAMP\\nNONCE\\nBODY\\n` (an empty 204 body gives
  `TIMESTAMP\\nNONCE\\n\\n`).

Every RSA signature comes from the `openssl` CLI (`openssl dgst -sha256 -sign`, SHA256withRSA
PKCS#1 v1.5, deterministic). `openssl enc` cannot do AEAD modes, so the AEAD_AES_256_GCM
notification resource is sealed with the Python `cryptography` package (OpenSSL underneath);
the nonce is fixed, so the ciphertext is deterministic too. `cryptography` is needed to run
this script: `pip install --user cryptography` if `python3 -c "import cryptography"` fails
(.ci/run does exactly that).

Re-running this script reproduces the committed files byte for byte; CI does exactly that and
compares.

Usage: generate.py [OUTPUT_DIR]   (default: this script's directory)
"""
import base64
import json
import os
import subprocess
import sys

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # pragma: no cover
    sys.exit("generate.py needs the Python `cryptography` package: pip install --user cryptography")

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.path.join(HERE, "keys")

# The fixed identifiers of keys/README.md.
MCHID = "1900000001"
MERCHANT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PUB_KEY_ID = "PUB_KEY_ID_0119000000012025112500000000000001"
APPID = "wx8888888888888888"

# 2026-11-25 17:59:37 Beijing time, Unix seconds.
TIMESTAMP = "1795600777"
ORDER_ID = "ord_vector0000000000000001"
NOTIFY_URL = "http://127.0.0.1:8080/notify/wechatpay"
SCHEME = "WECHATPAY2-SHA256-RSA2048"


def sign(message: bytes, key_file: str) -> str:
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", os.path.join(KEYS, key_file)],
        input=message,
        capture_output=True,
        check=True,
    ).stdout
    return base64.b64encode(signature).decode("ascii")


def compact(value) -> str:
    """Compact JSON with raw UTF-8, as WeChat Pay and most SDKs send it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def request_vector(description: str, method: str, path: str, nonce: str, body: str) -> dict:
    message = f"{method}\n{path}\n{TIMESTAMP}\n{nonce}\n{body}\n"
    signature = sign(message.encode("utf-8"), "merchant_private_pkcs8.pem")
    authorization = (
        f'{SCHEME} mchid="{MCHID}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{TIMESTAMP}",serial_no="{MERCHANT_SERIAL}"'
    )
    return {
        "description": description + ": signed with keys/merchant_private_pkcs8.pem; verify with keys/merchant_public.pem",
        "method": method,
        "path": path,
        "timestamp": TIMESTAMP,
        "nonce": nonce,
        "body": body,
        "message": message,
        "signature": signature,
        "authorization": authorization,
        "mchid": MCHID,
        "serial_no": MERCHANT_SERIAL,
    }


def signed_headers(request_id: str, nonce: str, body: str) -> tuple:
    message = f"{TIMESTAMP}\n{nonce}\n{body}\n"
    signature = sign(message.encode("utf-8"), "platform_private_pkcs8.pem")
    headers = {
        "Request-ID": request_id,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": PUB_KEY_ID,
        "Wechatpay-Signature": signature,
        "Wechatpay-Signature-Type": SCHEME,
        "Wechatpay-Timestamp": TIMESTAMP,
    }
    return message, signature, headers


def response_vector(description: str, status: int, request_id: str, nonce: str, body: str) -> dict:
    message, signature, headers = signed_headers(request_id, nonce, body)
    if body:
        headers["Content-Type"] = "application/json; charset=utf-8"
    return {
        "description": description + ": signed with keys/platform_private_pkcs8.pem; verify with keys/platform_public.pem",
        "status": status,
        "timestamp": TIMESTAMP,
        "nonce": nonce,
        "body": body,
        "message": message,
        "signature": signature,
        "headers": headers,
    }


def notify_vector(plaintext: str, resource_nonce: str, header_nonce: str) -> dict:
    with open(os.path.join(KEYS, "apiv3_key.txt"), "rb") as f:
        apiv3_key = f.read().strip()
    assert len(apiv3_key) == 32 and len(resource_nonce) == 12
    associated_data = "transaction"
    sealed = AESGCM(apiv3_key).encrypt(
        resource_nonce.encode("ascii"), plaintext.encode("utf-8"), associated_data.encode("ascii")
    )
    ciphertext = base64.b64encode(sealed).decode("ascii")
    body = compact({
        "id": "EV-2026112517593700002",
        "create_time": "2026-11-25T17:59:37+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": ciphertext,
            "associated_data": associated_data,
            "nonce": resource_nonce,
        },
    })
    message, signature, headers = signed_headers("08F78BB5AF0610D302A0-0", header_nonce, body)
    headers["Content-Type"] = "application/json"
    return {
        "description": "TRANSACTION.SUCCESS notification: the resource sealed with AEAD_AES_256_GCM "
                       "(key keys/apiv3_key.txt, IV = nonce bytes, AAD = associated_data, "
                       "ciphertext = base64(ciphertext || 16-byte tag)), the body signed with "
                       "keys/platform_private_pkcs8.pem",
        "plaintext": plaintext,
        "resource_nonce": resource_nonce,
        "associated_data": associated_data,
        "ciphertext": ciphertext,
        "timestamp": TIMESTAMP,
        "nonce": header_nonce,
        "body": body,
        "message": message,
        "signature": signature,
        "headers": headers,
    }


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else HERE
    os.makedirs(out, exist_ok=True)
    transaction = {
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": ORDER_ID,
        "transaction_id": "4200000000202611250000000001",
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": "2026-11-25T17:59:30+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": 8888, "payer_total": 8888, "currency": "CNY", "payer_currency": "CNY"},
    }
    vectors = {
        "request_native.json": request_vector(
            "POST /v3/pay/transactions/native (Native prepay, raw UTF-8 in the body)",
            "POST",
            "/v3/pay/transactions/native",
            "NATIVE0VECTOR0NONCE0000000000001",
            compact({
                "appid": APPID,
                "mchid": MCHID,
                "description": "demo 中文",
                "out_trade_no": ORDER_ID,
                "time_expire": "2026-11-25T18:14:37+08:00",
                "notify_url": NOTIFY_URL,
                "amount": {"total": 8888, "currency": "CNY"},
            }),
        ),
        "request_query_get.json": request_vector(
            "GET query by out_trade_no (path and query signed as sent, empty body)",
            "GET",
            f"/v3/pay/transactions/out-trade-no/{ORDER_ID}?mchid={MCHID}",
            "QUERY0VECTOR0NONCE00000000000002",
            "",
        ),
        "response_query.json": response_vector(
            "200 answer to the query (a paid transaction)",
            200,
            "08F78BB5AF0610D302A0-0",
            "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
            compact(transaction),
        ),
        "response_close_204.json": response_vector(
            "204 answer to close (empty body, message TIMESTAMP\\nNONCE\\n\\n)",
            204,
            "08F78BB5AF0610D302A1-0",
            "CLOSE0VECTOR0NONCE00000000000004",
            "",
        ),
        "notify_transaction_success.json": notify_vector(
            compact(transaction), "fW2gOq5xYbTk", "NOTIFY0VECTOR0NONCE0000000000005"
        ),
    }
    for name, vector in vectors.items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(vector, f, ensure_ascii=False, indent=2, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
