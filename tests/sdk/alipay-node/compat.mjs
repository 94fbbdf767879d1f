// Compatibility test: the official npm `alipay-sdk` (pinned in package.json, unmodified)
// against a running paysim sandbox, configured only from the sandbox's sandbox.json.
// Usage: node compat.mjs <path/to/sandbox.json>. Exits non-zero on the first failed expectation.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { AlipaySdk } from 'alipay-sdk';

const sandboxPath = process.argv[2];
if (!sandboxPath) {
  console.error('usage: node compat.mjs <sandbox.json>');
  process.exit(2);
}
const sandbox = JSON.parse(fs.readFileSync(sandboxPath, 'utf8'));
const alipay = sandbox.channels?.alipay;
if (!alipay) throw new Error('sandbox.json has no channels.alipay');
// Key paths in sandbox.json are relative to the directory paysim was started in.
const read = (file) => fs.readFileSync(path.resolve(process.cwd(), file), 'utf8');

let failures = 0;
function check(name, condition, detail) {
  if (condition) {
    console.log(`ok   ${name}`);
  } else {
    failures += 1;
    console.log(`FAIL ${name}: ${detail === undefined ? '' : JSON.stringify(detail)}`);
  }
}

// A small receiver for the simulator's notifications; answers the exact body `success`.
const notifications = [];
const receiver = http.createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    notifications.push(Object.fromEntries(new URLSearchParams(body)));
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('success');
  });
});
await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const notifyUrl = `http://127.0.0.1:${receiver.address().port}/notify`;

const sdk = new AlipaySdk({
  appId: alipay.app_id,
  privateKey: read(alipay.app_private_key_pkcs1_file),
  keyType: 'PKCS1',
  alipayPublicKey: read(alipay.alipay_public_key_file),
  gateway: alipay.gateway_url,
  signType: 'RSA2',
  timeout: 10000,
});
const strict = { validateSign: true };

async function control(outTradeNo, action) {
  const response = await fetch(`${alipay.control_url}/trades/${outTradeNo}/actions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ action }),
  });
  check(`control plane ${action} ${outTradeNo}`, response.ok, await response.text());
}

const run = `${Date.now()}`;
const tradeA = `sdk_a_${run}`;
const tradeB = `sdk_b_${run}`;

// precreate → buyer pays → query
const pre = await sdk.exec('alipay.trade.precreate', {
  notify_url: notifyUrl,
  bizContent: { out_trade_no: tradeA, total_amount: '88.88', subject: 'compat 测试' },
}, strict);
check('precreate answers 10000 with a qr_code', pre.code === '10000' && typeof pre.qrCode === 'string', pre);
await control(tradeA, 'pay');
const paid = await sdk.exec('alipay.trade.query', { bizContent: { out_trade_no: tradeA } }, strict);
check('query shows TRADE_SUCCESS', paid.code === '10000' && paid.tradeStatus === 'TRADE_SUCCESS', paid);
check('query echoes the amount', paid.totalAmount === '88.88', paid);

// partial refund → refund query
const refund = await sdk.exec('alipay.trade.refund', {
  bizContent: { out_trade_no: tradeA, refund_amount: '10.00', out_request_no: `r1_${run}` },
}, strict);
check('partial refund moves money', refund.code === '10000' && refund.fundChange === 'Y' && refund.refundFee === '10.00', refund);
const again = await sdk.exec('alipay.trade.refund', {
  bizContent: { out_trade_no: tradeA, refund_amount: '10.00', out_request_no: `r1_${run}` },
}, strict);
check('repeated out_request_no is idempotent (fund_change N)', again.code === '10000' && again.fundChange === 'N', again);
const refundQuery = await sdk.exec('alipay.trade.fastpay.refund.query', {
  bizContent: { out_trade_no: tradeA, out_request_no: `r1_${run}` },
}, strict);
check('refund query shows REFUND_SUCCESS', refundQuery.code === '10000' && refundQuery.refundStatus === 'REFUND_SUCCESS', refundQuery);
const over = await sdk.exec('alipay.trade.refund', {
  bizContent: { out_trade_no: tradeA, refund_amount: '100.00', out_request_no: `r2_${run}` },
}, strict);
check('over-refund is refused with a signed ACQ answer', over.code === '40004' && over.subCode === 'ACQ.REASON_TRADE_REFUND_FEE_ERR', over);

// close of a second trade (the buyer scanned, then the merchant closes)
const preB = await sdk.exec('alipay.trade.precreate', {
  notify_url: notifyUrl,
  bizContent: { out_trade_no: tradeB, total_amount: '1.00', subject: 'to be closed' },
}, strict);
check('second precreate', preB.code === '10000', preB);
await control(tradeB, 'scan');
const closed = await sdk.exec('alipay.trade.close', { bizContent: { out_trade_no: tradeB } }, strict);
check('close answers 10000', closed.code === '10000', closed);
const closedQuery = await sdk.exec('alipay.trade.query', { bizContent: { out_trade_no: tradeB } }, strict);
check('closed trade queries TRADE_CLOSED', closedQuery.tradeStatus === 'TRADE_CLOSED', closedQuery);

// bill download URL (yesterday, Beijing time)
const yesterday = new Date(Date.now() + 8 * 3600e3 - 24 * 3600e3).toISOString().slice(0, 10);
const bill = await sdk.exec('alipay.data.dataservice.bill.downloadurl.query', {
  bizContent: { bill_type: 'trade', bill_date: yesterday },
}, strict);
check('bill download URL or a signed isp.bill_not_exist', (bill.code === '10000' && typeof bill.billDownloadUrl === 'string') || bill.subCode === 'isp.bill_not_exist', bill);

// the notification the simulator delivered verifies with the SDK's own checker
const deadline = Date.now() + 15000;
while (!notifications.some((n) => n.out_trade_no === tradeA) && Date.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 100));
}
const notification = notifications.find((n) => n.out_trade_no === tradeA);
check('a notification arrived for the paid trade', notification !== undefined, notifications);
if (notification) {
  check('checkNotifySign accepts the notification', sdk.checkNotifySign(notification) === true, notification);
  const forged = { ...notification, total_amount: '0.01' };
  check('checkNotifySign rejects a tampered copy', sdk.checkNotifySign(forged) === false, forged);
}

receiver.close();
if (failures > 0) {
  console.log(`${failures} expectation(s) failed`);
  process.exit(1);
}
console.log('alipay-sdk compatibility: all expectations met');
