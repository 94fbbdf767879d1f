// Compatibility test: npm `wechatpay-axios-plugin` (pinned in package.json, unmodified) against a
// running paysim sandbox, configured only from the sandbox's sandbox.json (channels.wechatpay),
// in WeChat Pay public-key mode: certs = { PUB_KEY_ID_…: platform public key }.
// The plugin verifies every 2xx answer itself (Wechatpay-* headers, ±300 s, RSA signature) and
// rejects what it cannot verify, so each successful call below is also a signature check.
// Usage: node compat.mjs <path/to/sandbox.json>. Exits non-zero when an expectation failed.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Wechatpay, Rsa, Aes, Formatter } from 'wechatpay-axios-plugin';

const sandboxPath = process.argv[2];
if (!sandboxPath) {
  console.error('usage: node compat.mjs <sandbox.json>');
  process.exit(2);
}
const sandbox = JSON.parse(fs.readFileSync(sandboxPath, 'utf8'));
const wechat = sandbox.channels?.wechatpay;
if (!wechat) throw new Error('sandbox.json has no channels.wechatpay');
// Key paths in sandbox.json are relative to the directory paysim was started in.
const read = (file) => fs.readFileSync(path.resolve(process.cwd(), file), 'utf8');
const apiv3Key = read(wechat.apiv3_key_file).trim();
const platformPublicKey = Rsa.from(read(wechat.platform_public_key_file), Rsa.KEY_TYPE_PUBLIC);

let failures = 0;
function check(name, condition, detail) {
  if (condition) {
    console.log(`ok   ${name}`);
  } else {
    failures += 1;
    console.log(`FAIL ${name}: ${detail === undefined ? '' : JSON.stringify(detail)}`);
  }
}

// What a rejected plugin call leaves: the plugin's error code plus the HTTP answer, if any.
function describe(error) {
  return {
    code: error?.code,
    message: error?.message,
    status: error?.response?.status,
    headers: error?.response?.headers ? { ...error.response.headers } : undefined,
    data: error?.response?.data,
  };
}
// Runs a plugin call; resolves to { response } or { error } (never throws).
async function attempt(call) {
  try {
    return { response: await call() };
  } catch (error) {
    return { error };
  }
}

// A small receiver for the simulator's notifications: keeps the raw body and headers, answers 200.
const notifications = [];
const receiver = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    notifications.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"code":"SUCCESS","message":"成功"}');
  });
});
await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const notifyUrl = `http://127.0.0.1:${receiver.address().port}/notify`;

const wxpay = new Wechatpay({
  mchid: wechat.mchid,
  serial: wechat.merchant_serial_no,
  privateKey: read(wechat.merchant_private_key_file),
  certs: { [wechat.platform_public_key_id]: platformPublicKey },
  baseURL: wechat.base_url.endsWith('/') ? wechat.base_url : `${wechat.base_url}/`,
  timeout: 10000,
});

async function control(outTradeNo, action) {
  const response = await fetch(`${wechat.control_url}/trades/${outTradeNo}/actions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ action }),
  });
  check(`control plane ${action} ${outTradeNo}`, response.ok, await response.text());
}
async function armFault(target, fault) {
  const response = await fetch(`${wechat.control_url}/faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ target, fault, times: 1 }),
  });
  check(`control plane arms ${fault} on ${target}`, response.status === 201, await response.text());
}

const run = `${Date.now()}`;
const tradeA = `sdk_wa_${run}`;
const tradeB = `sdk_wb_${run}`;
const refundNo = `sdk_wr_${run}`;
const prepay = (outTradeNo, total, description) => wxpay.v3.pay.transactions.native.post({
  appid: wechat.appid,
  mchid: wechat.mchid,
  description,
  out_trade_no: outTradeNo,
  notify_url: notifyUrl,
  amount: { total, currency: 'CNY' },
});
const query = (outTradeNo) => wxpay.v3.pay.transactions.outTradeNo._out_trade_no_.get({
  params: { mchid: wechat.mchid },
  out_trade_no: outTradeNo,
});

// Native prepay → buyer pays → query by out_trade_no
const pre = await attempt(() => prepay(tradeA, 8888, 'compat 测试-Native'));
check('native prepay answers 200 with a code_url (signature verified by the plugin)',
  pre.response?.status === 200 && /^weixin:\/\/wxpay\/bizpayurl\?pr=/.test(pre.response?.data?.code_url ?? ''),
  pre.error ? describe(pre.error) : pre.response?.data);
const preAgain = await attempt(() => prepay(tradeA, 8888, 'compat 测试-Native'));
check('repeated identical prepay answers the same code_url',
  preAgain.response?.data?.code_url !== undefined && preAgain.response.data.code_url === pre.response?.data?.code_url,
  preAgain.error ? describe(preAgain.error) : preAgain.response?.data);
const unpaid = await attempt(() => query(tradeA));
check('query before payment shows NOTPAY', unpaid.response?.data?.trade_state === 'NOTPAY',
  unpaid.error ? describe(unpaid.error) : unpaid.response?.data);
await control(tradeA, 'pay');
const paid = await attempt(() => query(tradeA));
const tx = paid.response?.data;
check('query shows SUCCESS', tx?.trade_state === 'SUCCESS', paid.error ? describe(paid.error) : tx);
check('query echoes amount, ids and trade type',
  tx?.amount?.total === 8888 && tx?.mchid === wechat.mchid && tx?.appid === wechat.appid
    && tx?.out_trade_no === tradeA && /^\d{28}$/.test(tx?.transaction_id ?? '') && tx?.trade_type === 'NATIVE',
  tx);

// errors reject with an AxiosError carrying the parsed {code, message}
const missing = await attempt(() => query(`sdk_wx_${run}`));
check('query of an unknown order rejects 404 ORDER_NOT_EXIST',
  missing.error?.response?.status === 404 && missing.error?.response?.data?.code === 'ORDER_NOT_EXIST',
  missing.error ? describe(missing.error) : missing.response?.data);

// trade bill: a fresh sandbox has no activity yesterday (Beijing), so the mock answers the
// documented, signed 400 NO_STATEMENT_EXIST; today is refused as not yet available.
const beijingDay = (offsetDays) => new Date(Date.now() + 8 * 3600e3 + offsetDays * 86400e3).toISOString().slice(0, 10);
const billYesterday = await attempt(() => wxpay.v3.bill.tradebill.get({ params: { bill_date: beijingDay(-1) } }));
check('trade bill of a day without activity rejects 400 NO_STATEMENT_EXIST (signed answer)',
  billYesterday.error?.response?.status === 400 && billYesterday.error?.response?.data?.code === 'NO_STATEMENT_EXIST',
  billYesterday.error ? describe(billYesterday.error) : billYesterday.response?.data);
const billToday = await attempt(() => wxpay.v3.bill.tradebill.get({ params: { bill_date: beijingDay(0) } }));
check('trade bill of today is refused (400)', billToday.error?.response?.status === 400,
  billToday.error ? describe(billToday.error) : billToday.response?.data);

// close of a second order → 204 (signed empty body, verified by the plugin) → CLOSED
const preB = await attempt(() => prepay(tradeB, 100, 'to be closed'));
check('second prepay', preB.response?.status === 200, preB.error ? describe(preB.error) : preB.response?.data);
const close = (outTradeNo) => wxpay.v3.pay.transactions.outTradeNo._out_trade_no_.close.post(
  { mchid: wechat.mchid },
  { out_trade_no: outTradeNo },
);
const closed = await attempt(() => close(tradeB));
check('close answers 204', closed.response?.status === 204,
  closed.error ? describe(closed.error) : { status: closed.response?.status, data: closed.response?.data });
const closedQuery = await attempt(() => query(tradeB));
check('closed order queries CLOSED', closedQuery.response?.data?.trade_state === 'CLOSED',
  closedQuery.error ? describe(closedQuery.error) : closedQuery.response?.data);
const closePaid = await attempt(() => close(tradeA));
check('close of a paid order is refused (400 ORDERPAID)',
  closePaid.error?.response?.status === 400 && closePaid.error?.response?.data?.code === 'ORDERPAID',
  closePaid.error ? describe(closePaid.error) : closePaid.response?.status);

// refund → PROCESSING/SUCCESS → refund query SUCCESS once the mock settles it (≈5 s)
const refund = await attempt(() => wxpay.v3.refund.domestic.refunds.post({
  out_trade_no: tradeA,
  out_refund_no: refundNo,
  reason: '兼容性测试',
  notify_url: notifyUrl,
  amount: { refund: 1000, total: 8888, currency: 'CNY' },
}));
const refundData = refund.response?.data;
check('refund answers PROCESSING or SUCCESS',
  refund.response?.status === 200 && ['PROCESSING', 'SUCCESS'].includes(refundData?.status)
    && refundData?.out_refund_no === refundNo && refundData?.amount?.refund === 1000,
  refund.error ? describe(refund.error) : refundData);
const queryRefund = () => wxpay.v3.refund.domestic.refunds._out_refund_no_.get({ out_refund_no: refundNo });
let refundQuery = await attempt(queryRefund);
const refundDeadline = Date.now() + 15000;
while (refundQuery.response?.data?.status === 'PROCESSING' && Date.now() < refundDeadline) {
  await new Promise((resolve) => setTimeout(resolve, 500));
  refundQuery = await attempt(queryRefund);
}
check('refund query shows SUCCESS after the mock settles it',
  refundQuery.response?.data?.status === 'SUCCESS' && typeof refundQuery.response?.data?.success_time === 'string',
  refundQuery.error ? describe(refundQuery.error) : refundQuery.response?.data);
const refunded = await attempt(() => query(tradeA));
check('refunded order queries REFUND', refunded.response?.data?.trade_state === 'REFUND',
  refunded.error ? describe(refunded.error) : refunded.response?.data);

// the plugin really verifies: answers the mock signs wrongly on purpose are rejected
await armFault('pay.transactions.out-trade-no', 'signtest_response');
const signtest = await attempt(() => query(tradeA));
check('a WECHATPAY/SIGNTEST/ answer is rejected (EV3_RES_HEADER_SIGNATURE_DIGEST)',
  signtest.error?.code === 'EV3_RES_HEADER_SIGNATURE_DIGEST',
  signtest.error ? describe(signtest.error) : signtest.response?.data);
await armFault('pay.transactions.out-trade-no', 'bad_response_signature');
const badSig = await attempt(() => query(tradeA));
check('an answer signed over other bytes is rejected (EV3_RES_HEADER_SIGNATURE_DIGEST)',
  badSig.error?.code === 'EV3_RES_HEADER_SIGNATURE_DIGEST',
  badSig.error ? describe(badSig.error) : badSig.response?.data);

// notifications the simulator delivered verify and decrypt with the plugin's own helpers
function verifyNotification(notification) {
  const h = notification.headers;
  return Rsa.verify(
    Formatter.response(h['wechatpay-timestamp'], h['wechatpay-nonce'], notification.body),
    h['wechatpay-signature'],
    platformPublicKey,
  );
}
function decryptNotification(body) {
  const { resource } = JSON.parse(body);
  return JSON.parse(Aes.AesGcm.decrypt(resource.ciphertext, apiv3Key, resource.nonce, resource.associated_data));
}
async function awaitNotification(eventType, matches) {
  const deadline = Date.now() + 15000;
  for (;;) {
    const found = notifications.find((n) => {
      try {
        const envelope = JSON.parse(n.body);
        return envelope.event_type === eventType && matches(decryptNotification(n.body));
      } catch {
        return false;
      }
    });
    if (found || Date.now() >= deadline) return found;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const payNotice = await awaitNotification('TRANSACTION.SUCCESS', (t) => t.out_trade_no === tradeA);
check('a TRANSACTION.SUCCESS notification arrived for the paid order', payNotice !== undefined,
  notifications.map((n) => n.body.slice(0, 200)));
if (payNotice) {
  const h = payNotice.headers;
  check('notification names the public key id in Wechatpay-Serial',
    h['wechatpay-serial'] === wechat.platform_public_key_id, h);
  check('notification timestamp within ±300 s', Math.abs(Number(h['wechatpay-timestamp']) - Formatter.timestamp()) <= 300, h);
  check('Rsa.verify accepts the payment notification', verifyNotification(payNotice) === true, h);
  const envelope = JSON.parse(payNotice.body);
  check('envelope is an encrypt-resource with AAD transaction',
    envelope.resource_type === 'encrypt-resource' && envelope.resource?.algorithm === 'AEAD_AES_256_GCM'
      && envelope.resource?.associated_data === 'transaction' && envelope.resource?.original_type === 'transaction',
    envelope);
  const plain = decryptNotification(payNotice.body);
  check('Aes.AesGcm.decrypt yields the paid transaction',
    plain.trade_state === 'SUCCESS' && plain.amount?.total === 8888 && plain.transaction_id === tx?.transaction_id
      && plain.mchid === wechat.mchid, plain);
  // tampered copies: a changed body fails the signature, a changed ciphertext fails GCM
  const tamperedBody = payNotice.body.replace('"TRANSACTION.SUCCESS"', '"TRANSACTION.SUCCESS" ');
  check('Rsa.verify rejects a tampered copy of the notification',
    tamperedBody !== payNotice.body && verifyNotification({ ...payNotice, body: tamperedBody }) === false);
  const forgedResource = {
    ...envelope.resource,
    ciphertext: Aes.AesGcm.encrypt(JSON.stringify({ ...plain, amount: { ...plain.amount, total: 1 } }),
      'x'.repeat(32), envelope.resource.nonce, envelope.resource.associated_data),
  };
  const forgedBody = JSON.stringify({ ...envelope, resource: forgedResource });
  check('Rsa.verify rejects a copy with a swapped resource',
    verifyNotification({ ...payNotice, body: forgedBody }) === false);
  let gcmRejected = false;
  try {
    decryptNotification(forgedBody);
  } catch {
    gcmRejected = true;
  }
  check('Aes.AesGcm.decrypt rejects a ciphertext not made with the APIv3 key', gcmRejected);
}

const refundNotice = await awaitNotification('REFUND.SUCCESS', (r) => r.out_refund_no === refundNo);
check('a REFUND.SUCCESS notification arrived for the refund', refundNotice !== undefined,
  notifications.map((n) => n.body.slice(0, 200)));
if (refundNotice) {
  check('Rsa.verify accepts the refund notification', verifyNotification(refundNotice) === true, refundNotice.headers);
  const plain = decryptNotification(refundNotice.body);
  check('Aes.AesGcm.decrypt yields the settled refund (AAD refund)',
    JSON.parse(refundNotice.body).resource?.associated_data === 'refund'
      && plain.refund_status === 'SUCCESS' && plain.out_trade_no === tradeA && plain.amount?.refund === 1000, plain);
}

receiver.close();
if (failures > 0) {
  console.log(`${failures} expectation(s) failed`);
  process.exit(1);
}
console.log('wechatpay-axios-plugin compatibility: all expectations met');
