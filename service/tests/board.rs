//! The booking board in a real browser: headless Chromium driven over
//! WebDriver (chromedriver), against a server on a throwaway PostgreSQL.
//!
//! Chromium and ChromeDriver come from Debian's packages (`make test-deps`,
//! run by `make test`); GitHub's runners have Chrome and chromedriver.
//! `RSVP_CHROMEDRIVER` and `RSVP_CHROME` name other binaries;
//! `RSVP_SCREENSHOTS` names a directory to save the board's pictures in.

mod support;

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use abi::Role;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::*;

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

/// A chromedriver of its own, on a free port, with the browser's clock in
/// UTC so that times on the page read as in the test, and its temporary
/// files (the browsers' profiles among them) in a directory removed with it.
struct Driver {
    child: Child,
    url: String,
    tmp: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let binary = std::env::var_os("RSVP_CHROMEDRIVER")
            .map(PathBuf::from)
            .or_else(|| on_path("chromedriver"))
            .expect(
                "chromedriver is not installed: run `make test-deps` (or set RSVP_CHROMEDRIVER)",
            );
        let port = free_addr().port();
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .env("TZ", "UTC")
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            tmp,
        }
    }

    /// A new browser session (a window with a profile of its own).
    async fn browser(&self) -> Client {
        let mut options = json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1400,700",
            ],
        });
        let chrome = std::env::var_os("RSVP_CHROME")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.exists()));
        if let Some(chrome) = chrome {
            options["binary"] = json!(chrome);
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The browsers it started may still be ending: removing their
        // files is best effort.
        let _ = std::fs::remove_dir_all(self.tmp.path());
    }
}

const TEN: &str = ".cell[data-resource='room-1'][data-start='2026-12-01T10:00:00Z']";

/// What `script` returns, as text.
async fn eval(browser: &Client, script: &str) -> String {
    match browser
        .execute(script, vec![])
        .await
        .expect("the script runs")
    {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    }
}

async fn class_of(browser: &Client, selector: &str) -> String {
    eval(
        browser,
        &format!("const e = document.querySelector({selector:?}); return e ? e.className : '';"),
    )
    .await
}

async fn text_of(browser: &Client, selector: &str) -> String {
    eval(
        browser,
        &format!("const e = document.querySelector({selector:?}); return e ? e.textContent : '';"),
    )
    .await
}

/// Waits (up to 15 s, never reloading) until `what` of the page holds.
async fn until<F, Fut>(browser: &Client, describe: &str, what: F)
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !what(browser.clone()).await {
        if Instant::now() > deadline {
            let message = text_of(browser, "#message").await;
            panic!("{describe}: not within 15 s (message: {message:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(browser: &Client, selector: &str) {
    browser
        .find(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {selector}: {e}"));
}

async fn screenshot(browser: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("RSVP_SCREENSHOTS") {
        let png = browser.screenshot().await.expect("a screenshot");
        std::fs::write(Path::new(&dir).join(name), png).expect("saving the screenshot");
    }
}

fn board(app: &TestApp, query: &str) -> String {
    format!("http://{}/?day=2026-12-01&{query}", app.addr)
}

/// Two people on the board: one reserves, the other sees the time taken
/// without reloading, and is told why their own try is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_one_reserves_the_other_sees_it_live() {
    let app = TestApp::spawn().await;
    app.reserve("carol", "room-2", 13 * 60, 15 * 60)
        .await
        .unwrap();
    let driver = Driver::start();
    let alice = driver.browser().await;
    let bob = driver.browser().await;
    alice
        .goto(&board(&app, "resources=room-1,room-2&user=alice"))
        .await
        .unwrap();
    bob.goto(&board(&app, "resources=room-1,room-2&user=bob"))
        .await
        .unwrap();
    for browser in [&alice, &bob] {
        until(
            browser,
            "the board shows room-1 free at 10:00",
            |b| async move { class_of(&b, TEN).await == "cell free" },
        )
        .await;
        until(browser, "the change stream is live", |b| async move {
            class_of(&b, "#live").await == "on"
        })
        .await;
    }
    // Bob picks 10:00 too, and waits.
    click(&bob, TEN).await;
    assert!(class_of(&bob, TEN).await.contains("selected"));

    // Alice selects 10:00–11:00 (shift-click extends) and reserves.
    click(&alice, TEN).await;
    let half_past = TEN.replace("10:00:00Z", "10:30:00Z");
    alice
        .execute(
            "document.querySelector(arguments[0]).dispatchEvent(\
             new MouseEvent('mousedown', {bubbles: true, shiftKey: true}));",
            vec![json!(half_past)],
        )
        .await
        .unwrap();
    assert!(
        text_of(&alice, "#selection").await.contains("10:00"),
        "{}",
        text_of(&alice, "#selection").await
    );
    click(&alice, "#reserve").await;
    until(&alice, "alice is told her hold is made", |b| async move {
        text_of(&b, "#message").await.starts_with("Held room-1")
    })
    .await;
    until(&alice, "alice sees the time as hers", |b| async move {
        class_of(&b, TEN).await.contains("mine")
    })
    .await;
    assert!(class_of(&alice, &half_past).await.contains("mine"));

    // Bob's page, never reloaded, shows the time held.
    until(
        &bob,
        "bob sees 10:00 held without reloading",
        |b| async move { class_of(&b, TEN).await.contains("held") },
    )
    .await;

    // Bob's try is refused, and the page says why.
    click(&bob, "#reserve").await;
    until(&bob, "bob is told the time is taken", |b| async move {
        class_of(&b, "#message").await == "error"
    })
    .await;
    let message = text_of(&bob, "#message").await;
    assert!(
        message.contains("room-1 is already taken"),
        "the refusal in words: {message}"
    );

    // Alice confirms from her list; bob sees it booked.
    click(&alice, "#mine button.confirm").await;
    until(&alice, "confirmed", |b| async move {
        text_of(&b, "#message").await == "Confirmed."
    })
    .await;
    until(&bob, "bob sees 10:00 booked", |b| async move {
        class_of(&b, TEN).await.contains("taken")
    })
    .await;
    screenshot(&bob, "board.png").await;

    // A clinic that takes bookings a day ahead: today's time is shown as
    // not bookable, and a try is refused with the rule in words.
    let made = reqwest::Client::new()
        .post(format!("http://{}/v1/resources", app.addr))
        .json(&json!({"resource": {"id": "clinic", "policy": {"minNotice": "86400s"}}}))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{made:?}");
    alice
        .goto(&board(&app, "resources=clinic&user=alice"))
        .await
        .unwrap();
    let clinic = TEN.replace("room-1", "clinic");
    until(&alice, "the clinic's time today is not bookable", |b| {
        let clinic = clinic.clone();
        async move { class_of(&b, &clinic).await == "cell refused" }
    })
    .await;
    click(&alice, &clinic).await;
    click(&alice, "#reserve").await;
    until(&alice, "alice is told the rule", |b| async move {
        class_of(&b, "#message").await == "error"
    })
    .await;
    let message = text_of(&alice, "#message").await;
    assert!(
        message.starts_with("Not reserved, against the resource's rules: starts at least 1d"),
        "the rule in words: {message}"
    );
    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

/// With authentication on, the board asks for a token once, keeps it, and
/// sends it in a header (the change stream too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_works_with_a_token_entered_once() {
    let app = TestApp::spawn_with_tokens().await;
    let token = async |principal: &str| app.token(principal, Role::User).await;
    let secret = token("alice").await;
    let bob = token("bob").await;
    for token in [&secret, &bob] {
        until_token_works(app.addr, token.expose()).await;
    }
    let driver = Driver::start();
    let alice = driver.browser().await;
    alice.goto(&board(&app, "resources=room-1")).await.unwrap();
    until(&alice, "the board asks for a token", |b| async move {
        eval(
            &b,
            "return String(document.querySelector('#login').hidden);",
        )
        .await
            == "false"
    })
    .await;
    alice
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(secret.expose())
        .await
        .unwrap();
    click(&alice, "#login button").await;
    until(&alice, "the board knows alice", |b| async move {
        text_of(&b, "#who").await == "alice (user)"
    })
    .await;
    until(&alice, "the change stream is live", |b| async move {
        class_of(&b, "#live").await == "on"
    })
    .await;

    // Reloaded: no question asked again.
    alice.refresh().await.unwrap();
    until(
        &alice,
        "the board knows alice after a reload",
        |b| async move { text_of(&b, "#who").await == "alice (user)" },
    )
    .await;
    assert_eq!(
        eval(
            &alice,
            "return String(document.querySelector('#login').hidden);"
        )
        .await,
        "true"
    );
    until(&alice, "the change stream is live again", |b| async move {
        class_of(&b, "#live").await == "on"
    })
    .await;

    // A reservation made elsewhere shows up live.
    let made = reqwest::Client::new()
        .post(format!("http://{}/v1/reservations", app.addr))
        .bearer_auth(bob.expose())
        .json(&json!({"reservation": {
            "resourceId": "room-1",
            "start": "2026-12-01T10:00:00Z",
            "end": "2026-12-01T11:00:00Z",
        }}))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{made:?}");
    until(
        &alice,
        "another user's hold shows up live",
        |b| async move { class_of(&b, TEN).await.contains("held") },
    )
    .await;
    click(&alice, &TEN.replace("10:00:00Z", "12:00:00Z")).await;
    click(&alice, "#reserve").await;
    until(&alice, "alice's hold is made", |b| async move {
        text_of(&b, "#message").await.starts_with("Held room-1")
    })
    .await;
    screenshot(&alice, "board-token.png").await;
    alice.close().await.unwrap();
}
