//! A chat reply in a text channel's own form. The reply text is the channel's variant of the
//! answer already (the KB keeps one per channel where it needs one); what differs is how
//! options, the survey and the hand-off are offered: numbered text on SMS, tappable menu links
//! on WeChat (`weixin://bizmsgmenu`, which send the option's number back as the customer's
//! message).

use crate::core::channels::{ChannelTurn, Outcome};
use crate::dialog::chat::{Action, ChatResponse};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Sms,
    Wechat,
}

/// The text to send for a channel turn.
pub fn turn(t: &ChannelTurn, style: Style) -> String {
    match &t.outcome {
        Outcome::Reply(r) => reply(r, t.locale, style),
        Outcome::Rated { thanks, .. } => thanks.clone(),
        Outcome::Notice(text) => text.clone(),
    }
}

/// The text to send for a chat reply.
pub fn reply(r: &ChatResponse, locale: &str, style: Style) -> String {
    let mut out = match (style, r.action) {
        // The reply lists the options as "1. question" lines already: on WeChat they become
        // links that send the number back.
        (Style::Wechat, Action::Clarify) if !r.options.is_empty() => {
            let header = r.reply.lines().next().unwrap_or_default().to_string();
            let mut s = header;
            for (i, o) in r.options.iter().enumerate() {
                let n = i + 1;
                s.push('\n');
                s.push_str(&menu_link(&n.to_string(), &format!("{n}. {}", o.question)));
            }
            s
        }
        _ => r.reply.clone(),
    };
    if let Some(survey) = &r.survey {
        out.push_str("\n\n");
        out.push_str(&survey.prompt);
        if style == Style::Wechat {
            out.push('\n');
            let links: Vec<String> = (survey.min..=survey.max)
                .map(|n| menu_link(&n.to_string(), &n.to_string()))
                .collect();
            out.push_str(&links.join("  "));
        }
    }
    if r.action == Action::Handoff && r.handoff.is_some() {
        let wait = if locale == "en" {
            "(You can keep writing here; the agent sees the whole conversation.)"
        } else {
            "（您可以继续在这里留言，人工客服能看到完整的对话。）"
        };
        out.push('\n');
        out.push_str(wait);
    }
    out
}

/// A WeChat message-menu link: tapping it sends `content` as the customer's message.
fn menu_link(content: &str, label: &str) -> String {
    let id: String = content.chars().filter(|c| c.is_ascii_digit()).collect();
    format!(
        "<a href=\"weixin://bizmsgmenu?msgmenucontent={}&msgmenuid={}\">{}</a>",
        url_escape(content),
        if id.is_empty() { "0".into() } else { id },
        label.replace('<', "＜").replace('>', "＞")
    )
}

fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn menu_links_send_the_number() {
        let l = super::menu_link("2", "2. 退款多久到账");
        assert_eq!(
            l,
            "<a href=\"weixin://bizmsgmenu?msgmenucontent=2&msgmenuid=2\">2. 退款多久到账</a>"
        );
    }
}
