//! `pam-gateway configure webhook`: `[webhook]` from options or a tested
//! recipe (`conf/webhook/*.toml`, built in); the URL and header values
//! read as secrets.

use std::path::Path;

use toml_edit::{InlineTable, Value};

use super::{Ask, Plan, number, text, write_section};
use crate::{CliError, ConfigureWebhookArgs, Exit, WebhookMethodArg, WebhookRecipe};
use pam_gateway_core::gateway::GatewayKind;

/// The tested recipes, as shipped in `conf/webhook/` (the README's).
fn recipe_text(recipe: WebhookRecipe) -> &'static str {
    match recipe {
        WebhookRecipe::Ntfy => include_str!("../../../conf/webhook/ntfy.toml"),
        WebhookRecipe::Gotify => include_str!("../../../conf/webhook/gotify.toml"),
        WebhookRecipe::Matrix => include_str!("../../../conf/webhook/matrix.toml"),
        WebhookRecipe::Slack => include_str!("../../../conf/webhook/slack.toml"),
        WebhookRecipe::Discord => include_str!("../../../conf/webhook/discord.toml"),
        WebhookRecipe::Mattermost => include_str!("../../../conf/webhook/mattermost.toml"),
    }
}

/// What a recipe sets, but its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recipe {
    name: String,
    /// An example URL: shown when asking for the real one.
    url: String,
    method: String,
    content_type: String,
    body: String,
    /// Header names, and whether the value is `Bearer <token>`.
    headers: Vec<(String, bool)>,
}

fn load(recipe: WebhookRecipe) -> Result<Recipe, String> {
    let table: toml::Table =
        toml::from_str(recipe_text(recipe)).map_err(|e| format!("built-in recipe: {e}"))?;
    let section = table
        .get("webhook")
        .and_then(toml::Value::as_table)
        .ok_or("built-in recipe: no [webhook]")?;
    let get = |key: &str| {
        section
            .get(key)
            .and_then(toml::Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let headers = section
        .get("headers")
        .and_then(toml::Value::as_table)
        .map(|h| {
            h.iter()
                .map(|(name, example)| {
                    let bearer = example.as_str().is_some_and(|v| v.starts_with("Bearer "));
                    (name.clone(), bearer)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Recipe {
        name: get("name"),
        url: get("url"),
        method: get("method"),
        content_type: get("content_type"),
        body: get("body"),
        headers,
    })
}

/// One header whose value is asked for.
struct HeaderAsk {
    name: String,
    /// Store `Bearer <answer>` (unless the answer already starts so).
    bearer: bool,
}

pub fn run(path: &Path, args: &ConfigureWebhookArgs) -> Result<(), CliError> {
    let recipe = match args.recipe {
        Some(r) => Some(load(r).map_err(|m| CliError::new(Exit::Failed, m))?),
        None => None,
    };
    let body = match (&args.body, &recipe) {
        (Some(b), _) => b.clone(),
        (None, Some(r)) => r.body.clone(),
        (None, None) => {
            return Err(CliError::new(
                Exit::Usage,
                "--body TEMPLATE is required without --recipe: the request body, with \
                 {message} where the text goes, e.g. --body '{\"text\":\"{message}\"}'",
            ));
        }
    };
    let pick = |given: Option<&str>, from_recipe: Option<&str>| {
        given
            .or(from_recipe)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let name = pick(
        args.name.as_deref(),
        recipe.as_ref().map(|r| r.name.as_str()),
    );
    let method = pick(
        args.method.map(|m| match m {
            WebhookMethodArg::Post => "POST",
            WebhookMethodArg::Put => "PUT",
        }),
        recipe.as_ref().map(|r| r.method.as_str()),
    );
    let content_type = pick(
        args.content_type.as_deref(),
        recipe.as_ref().map(|r| r.content_type.as_str()),
    );

    let mut headers: Vec<HeaderAsk> = Vec::new();
    for given in &args.headers {
        if headers.iter().any(|h| h.name.eq_ignore_ascii_case(given)) {
            return Err(CliError::new(
                Exit::Usage,
                format!("--header {given} is given twice"),
            ));
        }
        headers.push(HeaderAsk {
            name: given.clone(),
            bearer: false,
        });
    }
    // A recipe's headers come first, unless named with --header too.
    let from_recipe: Vec<HeaderAsk> = recipe
        .iter()
        .flat_map(|r| r.headers.iter())
        .filter(|(n, _)| !args.headers.iter().any(|g| g.eq_ignore_ascii_case(n)))
        .map(|(n, bearer)| HeaderAsk {
            name: n.clone(),
            bearer: *bearer,
        })
        .collect();
    let recipe_count = from_recipe.len();
    let headers: Vec<HeaderAsk> = from_recipe.into_iter().chain(headers).collect();

    let mut values = Vec::new();
    if let Some(n) = &name {
        values.push(("name", text(n)));
    }
    if let Some(m) = &method {
        values.push(("method", text(m)));
    }
    if let Some(c) = &content_type {
        values.push(("content_type", text(c)));
    }
    values.push(("body", text(&body)));
    let mut sources = vec![
        ("name", "--name".to_string()),
        ("method", "--method".to_string()),
        ("content_type", "--content-type".to_string()),
        (
            "body",
            if args.body.is_some() {
                "--body"
            } else {
                "the recipe's body"
            }
            .to_string(),
        ),
        ("url", "the webhook URL".to_string()),
        ("headers", "a header".to_string()),
    ];
    if let Some(t) = args.timeout {
        values.push(("timeout", number(t)));
        sources.push(("timeout", "--timeout".to_string()));
    }

    let service = name.clone().unwrap_or_else(|| "webhook".to_string());
    let mut asks = vec![Ask {
        what: match &recipe {
            Some(r) if !r.url.is_empty() => format!("{service} URL, like {}", r.url),
            _ => "Webhook URL (https; {recipient} and {txn} may appear in its path)".to_string(),
        },
        stand_in: "https://webhook.invalid/",
        optional: false,
    }];
    for (i, h) in headers.iter().enumerate() {
        asks.push(Ask {
            what: if h.bearer {
                format!("{service} access token for the {} header", h.name)
            } else {
                format!("Value of the {} header", h.name)
            },
            stand_in: "stand-in-value",
            // A recipe's header may be left out (ntfy without access
            // control); one given with --header is wanted.
            optional: i < recipe_count,
        });
    }
    let names: Vec<(String, bool)> = headers.iter().map(|h| (h.name.clone(), h.bearer)).collect();
    write_section(
        path,
        Plan {
            kind: GatewayKind::Webhook,
            managed: &["name", "url", "method", "headers", "content_type", "body"],
            values,
            asks,
            place: Box::new(move |answers| {
                let mut keys = Vec::new();
                if let Some(Some(url)) = answers.first() {
                    keys.push(("url", text(url)));
                }
                let mut table = InlineTable::new();
                for ((name, bearer), answer) in names.iter().zip(answers.iter().skip(1)) {
                    let Some(value) = answer else { continue };
                    let value = if *bearer && !value.starts_with("Bearer ") {
                        format!("Bearer {value}")
                    } else {
                        value.to_string()
                    };
                    table.insert(name, Value::from(value));
                }
                if !table.is_empty() {
                    keys.push(("headers", Value::InlineTable(table)));
                }
                keys
            }),
            sources,
            next: "pam-gateway enroll USER --webhook RECIPIENT (what {recipient} stands for: \
                   an ntfy topic, a Matrix room id, a member id)"
                .to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_recipe_loads_with_a_body_and_a_name() {
        for recipe in WebhookRecipe::value_variants() {
            let r = load(*recipe).unwrap_or_else(|e| panic!("{recipe:?}: {e}"));
            assert!(r.body.contains("{message}"), "{recipe:?}: {r:?}");
            assert!(!r.name.is_empty() && !r.url.is_empty(), "{recipe:?}: {r:?}");
        }
        let ntfy = load(WebhookRecipe::Ntfy).expect("ntfy");
        assert_eq!(ntfy.headers, vec![("Authorization".to_string(), true)]);
        let gotify = load(WebhookRecipe::Gotify).expect("gotify");
        assert_eq!(gotify.headers, vec![("X-Gotify-Key".to_string(), false)]);
        assert!(
            load(WebhookRecipe::Slack)
                .expect("slack")
                .headers
                .is_empty()
        );
    }
}
