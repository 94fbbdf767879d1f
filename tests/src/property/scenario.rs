//! A shrunk script rendered as a scenario file (`scenarios/SCENARIOS.md`), so the minimal
//! failing case replays with `paysim scenario run`. [`to_scenario`] is pure: the operations,
//! plus what the suite's reference model pinned on the run that found the failure ([`Trace`];
//! empty when unknown, and then every gateway call keeps the runner's 2xx default with a note).

use std::fmt::Write as _;

use super::ops::{Buyer, Ch, Method, NetFault, Op, Portion};

/// What the suite's model pinned for one operation of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepHint {
    /// The suite performed the operation (an order reference with no order yet is skipped).
    pub ran: bool,
    /// The HTTP status the model required, when it required one.
    pub status: Option<u16>,
    /// The error code the model required with a refusal.
    pub error: Option<&'static str>,
    /// The amount a refund asked for, in fen (a `Rest` refund depends on the model).
    pub amount_minor: Option<i64>,
    /// The order (by creation index) a refund went to (it depends on which orders were paid).
    pub order: Option<usize>,
}

/// What the model knew on the run that found the failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// One per operation (missing: not known).
    pub steps: Vec<StepHint>,
    /// The order state (by creation index) the model allowed exactly where the run stopped.
    pub end_states: Vec<(usize, &'static str)>,
    /// The step the failure was found at (1-based; `ops.len() + 1`: the closing quiescence).
    pub failed_at: Option<usize>,
}

/// The suite's quiescence: 26 h of virtual time.
const QUIESCE: &str = "26h";

fn yuan(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.abs();
    format!("{sign}{}.{:02}", minor / 100, minor % 100)
}

/// Milliseconds as a duration `parse_duration` reads (`1h30m`, `500ms`), with a sign when asked.
fn duration(ms: i64, signed: bool) -> String {
    let mut out = String::new();
    if ms < 0 {
        out.push('-');
    } else if signed {
        out.push('+');
    }
    let mut rest = ms.unsigned_abs();
    if rest == 0 {
        out.push_str("0s");
        return out;
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

/// A TOML basic string (JSON's escapes are TOML's).
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// A flat JSON object as a TOML inline table.
fn inline_table(value: &serde_json::Value) -> String {
    let Some(map) = value.as_object() else {
        return "{}".to_owned();
    };
    if map.is_empty() {
        return "{}".to_owned();
    }
    let fields: Vec<String> = map
        .iter()
        .map(|(key, value)| {
            let value = match value {
                serde_json::Value::String(s) => quoted(s),
                other => other.to_string(),
            };
            format!("{key} = {value}")
        })
        .collect();
    format!("{{ {} }}", fields.join(", "))
}

fn auth_code(ch: Ch, method: Method) -> Option<&'static str> {
    match (ch, method) {
        (Ch::Alipay, Method::BarcodeOk) => Some("28123456789010000"),
        (Ch::Alipay, Method::BarcodeFail) => Some("28123456789014004"),
        (Ch::Wechatpay, Method::BarcodeOk) => Some("134567890123450000"),
        (Ch::Wechatpay, Method::BarcodeFail) => Some("134567890123454004"),
        _ => None,
    }
}

fn net_fault(ch: Ch, fault: NetFault) -> String {
    let extra = match fault {
        NetFault::TimeoutBeforeDelivery => "fault = \"timeout_before_delivery\"".to_owned(),
        NetFault::TimeoutAfterDelivery => "fault = \"timeout_after_delivery\"".to_owned(),
        NetFault::Reset => "fault = \"reset\"".to_owned(),
        NetFault::Delay { ms } => {
            format!(
                "fault = \"delay\", delay = \"{}\"",
                duration(i64::from(ms), false)
            )
        }
        NetFault::TruncatedBody => "fault = \"truncated_body\", keep_bytes = 12".to_owned(),
        NetFault::WrongContentType => {
            "fault = \"wrong_content_type\", content_type = \"text/html\"".to_owned()
        }
    };
    format!(
        "transport_fault = {{ channel = \"{}\", {extra}, times = 1 }}",
        ch.name()
    )
}

/// `status`/`error` fields from a hint, and a note when the model left the answer open.
fn answer(hint: &StepHint, default: &str, notes: &mut Vec<String>) -> String {
    match (hint.status, hint.error) {
        (Some(status), Some(error)) => format!(", status = {status}, error = {}", quoted(error)),
        (Some(status), None) if (200..300).contains(&status) => String::new(),
        (Some(status), None) => format!(", status = {status}"),
        (None, _) => {
            notes.push(format!(
                "outcome not pinned by the suite's model; {default} is only the runner's default"
            ));
            String::new()
        }
    }
}

/// The shrunk script as a scenario file: one step per operation (a comment for an operation
/// the suite skipped), the suite's closing 26 h quiescence when the script does not end with
/// one, and a closing `expect` (ledger verified, and each order state the model knew exactly).
pub fn to_scenario(seed: u64, skew_ms: i64, ops: &[Op], trace: &Trace) -> String {
    let mut out = String::new();
    let name = format!("regressions/proptest-{seed}");
    let _ = writeln!(
        out,
        "# The property suite's minimal failing case (seed {seed}, channel clock skew {skew_ms} ms), as a scenario."
    );
    let _ = writeln!(
        out,
        "# Replay: paysim scenario run scenarios/{name}.toml. Each step's note names the suite's operation;"
    );
    let _ = writeln!(
        out,
        "# answers are pinned only where the suite's model pinned them (see the notes)."
    );
    if let Some(step) = trace.failed_at {
        let _ = writeln!(
            out,
            "# The suite found the failure at step {step}{}.",
            if step > ops.len() {
                " (its closing quiescence)"
            } else {
                ""
            }
        );
    }
    if trace.end_states.is_empty() {
        let _ = writeln!(
            out,
            "# The model knew no order's final state exactly: the last expect checks only the ledger, so"
        );
        let _ = writeln!(
            out,
            "# `paysim scenario lint`'s end-state rule (an order's or refund's state) flags this file."
        );
    }
    let _ = writeln!(out, "name = {}", quoted(&name));
    let _ = writeln!(
        out,
        "description = \"Minimal failing case of the property suite (case seed {seed}), replayed on the scenario engine.\""
    );
    let _ = writeln!(out, "seed = {}", seed & i64::MAX.unsigned_abs());
    let _ = writeln!(out, "tags = [\"proptest\", \"regression\"]");
    let _ = writeln!(out);
    let _ = writeln!(out, "[setup]");
    let _ = writeln!(out, "channels = [\"alipay\", \"wechatpay\"]");
    if skew_ms != 0 {
        let _ = writeln!(out, "channel_clock_skew = \"{}\"", duration(skew_ms, true));
    }

    // Orders by creation: (channel, amount), and the amounts refunds asked for so far.
    let mut orders: Vec<(Ch, i64)> = Vec::new();
    let mut requested: Vec<i64> = Vec::new();
    let unknown = StepHint::default();
    for (index, op) in ops.iter().enumerate() {
        let number = index + 1;
        let hint = trace.steps.get(index).unwrap_or(&unknown);
        let known = !trace.steps.is_empty();
        if trace.failed_at.is_some_and(|step| number > step) {
            let _ = writeln!(
                out,
                "\n# op {number} ({op}): the suite stopped before it; replayed as written"
            );
        }
        let pick = |order: u8| (!orders.is_empty()).then(|| usize::from(order) % orders.len());
        let mut notes: Vec<String> = Vec::new();
        let action = match *op {
            Op::Create {
                ch,
                method,
                amount_minor,
            } => {
                orders.push((ch, amount_minor));
                requested.push(0);
                let mut fields = format!(
                    "order = \"o{}\", channel = \"{}\", method = \"{}\", amount = \"{}\", expires_in = \"30m\"",
                    orders.len(),
                    ch.name(),
                    method.api_name(),
                    yuan(amount_minor)
                );
                if let Some(code) = auth_code(ch, method) {
                    let _ = write!(fields, ", auth_code = \"{code}\"");
                }
                match method {
                    Method::Jsapi => fields.push_str(", openid = \"o_proptest_buyer\""),
                    Method::Wap => fields.push_str(", client_ip = \"203.0.113.7\""),
                    _ => {}
                }
                if method == Method::BarcodeFail && hint.status.is_none() {
                    notes.push("a declined payment code: 201 failed or 422, the model takes either (only 2xx passes here)".to_owned());
                } else {
                    fields.push_str(&answer(hint, "2xx", &mut notes));
                }
                format!("create_order = {{ {fields} }}")
            }
            Op::Buyer { order, action } => {
                let Some(at) = pick(order) else {
                    let _ = writeln!(
                        out,
                        "\n# op {number} ({op}): skipped by the suite, no order exists yet"
                    );
                    continue;
                };
                let status = match hint.status {
                    Some(status) => {
                        if status == 200 {
                            String::new()
                        } else {
                            format!(", status = {status}")
                        }
                    }
                    None => {
                        notes.push("the channel's answer is not pinned by the suite's model; 200 is only the runner's default".to_owned());
                        String::new()
                    }
                };
                let action = match action {
                    Buyer::Pay => "pay",
                    Buyer::Fail => "fail",
                    Buyer::Abandon => "abandon",
                    Buyer::Scan => "scan",
                };
                format!(
                    "buyer = {{ order = \"o{}\", action = \"{action}\"{status} }}",
                    at + 1
                )
            }
            Op::Close { order } => {
                let Some(at) = pick(order) else {
                    let _ = writeln!(
                        out,
                        "\n# op {number} ({op}): skipped by the suite, no order exists yet"
                    );
                    continue;
                };
                let answer = answer(hint, "2xx", &mut notes);
                format!("close = {{ order = \"o{}\"{answer} }}", at + 1)
            }
            Op::Refund { order, portion } => {
                let Some(at) = hint.order.filter(|at| *at < orders.len()).or_else(|| pick(order)) else {
                    let _ = writeln!(
                        out,
                        "\n# op {number} ({op}): skipped by the suite, no order exists yet"
                    );
                    continue;
                };
                let amount = orders[at].1;
                let asked = match (portion, hint.amount_minor) {
                    (_, Some(asked)) => asked,
                    (Portion::Part(pct), None) => (amount * i64::from(pct) / 100).max(1),
                    (Portion::Over, None) => amount + 1,
                    (Portion::Rest, None) => {
                        notes.push("the suite asks for what its model believes remains; here the amount less the refunds asked before".to_owned());
                        (amount - requested[at]).max(1)
                    }
                };
                if asked <= amount {
                    requested[at] += asked;
                }
                let answer = if asked > amount {
                    // Always refused; which code depends on whether the order is paid by then.
                    match hint.error {
                        Some(error) => format!(", status = 409, error = {}", quoted(error)),
                        None => {
                            notes.push("over-refund: refund_exceeds_refundable if the order is paid by then, refund_not_allowed if not (the model did not pin which)".to_owned());
                            ", status = 409".to_owned()
                        }
                    }
                } else {
                    answer(hint, "2xx", &mut notes)
                };
                format!(
                    "refund = {{ order = \"o{}\", amount = \"{}\"{answer} }}",
                    at + 1,
                    yuan(asked)
                )
            }
            Op::Query { order } => {
                let Some(at) = pick(order) else {
                    let _ = writeln!(
                        out,
                        "\n# op {number} ({op}): skipped by the suite, no order exists yet"
                    );
                    continue;
                };
                format!("query = {{ order = \"o{}\" }}", at + 1)
            }
            Op::Advance { ms } => format!("advance = \"{}\"", duration(ms, false)),
            Op::Protocol { ch, fault } => format!(
                "fault = {{ channel = \"{}\", target = \"{}\", name = \"{}\", times = 1, params = {} }}",
                ch.name(),
                fault.target(),
                fault.name(),
                inline_table(&fault.params(ch))
            ),
            Op::Net { ch, fault } => net_fault(ch, fault),
            Op::Quiesce => {
                notes.push("the suite's quiescence; it also disarms every fault first, which a scenario cannot: faults not yet fired stay armed".to_owned());
                format!("advance = \"{QUIESCE}\"")
            }
        };
        if known && !hint.ran && trace.failed_at.is_none_or(|step| number <= step) {
            notes.push("the suite did not perform this operation".to_owned());
        }
        let mut note = format!("op {number}: {op}");
        for extra in notes {
            let _ = write!(note, "; {extra}");
        }
        let _ = writeln!(out, "\n[[step]]\nnote = {}\n{action}", quoted(&note));
    }
    // The suite quiesces at the end unless the script does, or it failed before getting there.
    let stopped_early = trace.failed_at.is_some_and(|step| step <= ops.len());
    if ops.last() != Some(&Op::Quiesce) && !stopped_early {
        let _ = writeln!(
            out,
            "\n[[step]]\nnote = \"the suite's closing quiescence (it disarms every fault first, which a scenario cannot)\"\nadvance = \"{QUIESCE}\""
        );
    }
    let _ = writeln!(out, "\n[[step]]");
    if !trace.end_states.is_empty() {
        let _ = writeln!(
            out,
            "note = \"order states the suite's model knew exactly where the run stopped\""
        );
    }
    let _ = writeln!(out, "[step.expect]");
    let _ = writeln!(out, "ledger_verified = true");
    for (order, state) in &trace.end_states {
        if *order < orders.len() {
            let _ = writeln!(out, "order.o{} = {{ state = \"{state}\" }}", order + 1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::ops::ProtocolFault;
    use super::*;

    fn sample() -> Vec<Op> {
        vec![
            Op::Refund {
                order: 0,
                portion: Portion::Rest,
            },
            Op::Create {
                ch: Ch::Alipay,
                method: Method::Qr,
                amount_minor: 2_500,
            },
            Op::Create {
                ch: Ch::Wechatpay,
                method: Method::BarcodeOk,
                amount_minor: 1,
            },
            Op::Create {
                ch: Ch::Wechatpay,
                method: Method::Jsapi,
                amount_minor: 123_456,
            },
            Op::Buyer {
                order: 3,
                action: Buyer::Pay,
            },
            Op::Refund {
                order: 0,
                portion: Portion::Part(40),
            },
            Op::Refund {
                order: 0,
                portion: Portion::Rest,
            },
            Op::Refund {
                order: 1,
                portion: Portion::Over,
            },
            Op::Close { order: 2 },
            Op::Query { order: 1 },
            Op::Advance { ms: 1_800_000 },
            Op::Protocol {
                ch: Ch::Wechatpay,
                fault: ProtocolFault::Http500 {
                    executed: true,
                    status: 503,
                },
            },
            Op::Protocol {
                ch: Ch::Alipay,
                fault: ProtocolFault::ConflictingStatusNotification,
            },
            Op::Net {
                ch: Ch::Alipay,
                fault: NetFault::Delay { ms: 3_000 },
            },
            Op::Net {
                ch: Ch::Wechatpay,
                fault: NetFault::TruncatedBody,
            },
            Op::Net {
                ch: Ch::Wechatpay,
                fault: NetFault::WrongContentType,
            },
            Op::Net {
                ch: Ch::Alipay,
                fault: NetFault::TimeoutAfterDelivery,
            },
            Op::Quiesce,
            Op::Create {
                ch: Ch::Wechatpay,
                method: Method::BarcodeFail,
                amount_minor: 99,
            },
        ]
    }

    #[test]
    fn renders_a_scenario_the_engine_loads() {
        for (skew_ms, trace) in [
            (0, Trace::default()),
            (
                -90_000,
                Trace {
                    steps: vec![
                        StepHint::default(),
                        StepHint {
                            ran: true,
                            status: Some(201),
                            ..StepHint::default()
                        },
                    ],
                    end_states: vec![(0, "closed"), (1, "paid")],
                    failed_at: Some(8),
                },
            ),
        ] {
            let text = to_scenario(7, skew_ms, &sample(), &trace);
            let scenario = match conformance::load("proptest.toml", &text) {
                Ok(scenario) => scenario,
                Err(diagnostics) => panic!("{text}\n{diagnostics:#?}"),
            };
            assert_eq!(scenario.seed, 7);
            assert_eq!(scenario.channel_clock_skew_ms, skew_ms);
            // 18 performed operations (the skipped refund is a comment), the closing quiescence
            // unless the suite stopped before it, and the closing expect.
            let quiescence = usize::from(trace.failed_at.is_none());
            assert_eq!(scenario.steps.len(), 18 + quiescence + 1, "{text}");
        }
    }

    #[test]
    fn renders_amounts_and_refusals() {
        let text = to_scenario(1, 30_000, &sample(), &Trace::default());
        assert!(text.contains("channel_clock_skew = \"+30s\""), "{text}");
        assert!(
            text.contains("# op 1 (refund order#0 Rest): skipped"),
            "{text}"
        );
        assert!(text.contains("amount = \"25.00\""), "{text}");
        assert!(
            text.contains("auth_code = \"134567890123450000\""),
            "{text}"
        );
        // 40 % of 25.00, then the rest, then one fen above the whole of o2.
        assert!(text.contains("refund = { order = \"o1\", amount = \"10.00\" }"));
        assert!(text.contains("refund = { order = \"o1\", amount = \"15.00\" }"));
        assert!(text.contains("refund = { order = \"o2\", amount = \"0.02\", status = 409 }"));
        assert!(text.contains("fault = \"delay\", delay = \"3s\""), "{text}");
        assert!(text.contains("advance = \"30m\""), "{text}");
        assert!(text.contains("advance = \"26h\""), "{text}");
        assert!(text.contains("params = { executed = true, status = 503 }"));
        assert!(text.contains("lint"), "{text}");
        assert_eq!(duration(-90_000, true), "-1m30s");
        assert_eq!(duration(500, true), "+500ms");
    }
}
