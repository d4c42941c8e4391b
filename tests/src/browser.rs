//! A real browser for the web app's tests: headless Chromium at a given
//! window size, driven over WebDriver by `chromedriver` (Debian's
//! `chromium` and `chromium-driver`), with its own throw-away profile.
//! Screenshots go to `target/test-artifacts/web/`.

use super::*;

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The WebDriver code of the Enter key.
pub const ENTER: &str = "\u{E007}";

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`×`height`
    /// window, English as its language.
    pub fn start(width: u32, height: u32) -> Result<Browser> {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start chromedriver (Debian: chromium-driver)")?;
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            _profile: tempfile::tempdir()?,
        };
        wait_for(Duration::from_secs(20), "chromedriver to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        })?;
        let profile = browser._profile.path().display().to_string();
        let capabilities = serde_json::json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                // The tests' HTTPS certificates are self-signed.
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--disable-extensions", "--lang=en-US",
                        format!("--window-size={width},{height}"),
                        format!("--user-data-dir={profile}"),
                    ],
                    "prefs": { "intl.accept_languages": "en-US,en" },
                },
                "goog:loggingPrefs": { "browser": "ALL" },
            }}
        });
        let (status, answer) = json_exchange(port, "POST", "/session", Some(&capabilities))?;
        if status != 200 {
            bail!("chromedriver refused a session ({status}): {answer}");
        }
        browser.session = answer["value"]["sessionId"]
            .as_str()
            .context("no sessionId")?
            .to_owned();
        // The page gets exactly the screen's size (a window's includes the
        // browser's own frame); narrow screens are touch phones.
        browser.command(
            "POST",
            "/goog/cdp/execute",
            Some(serde_json::json!({
                "cmd": "Emulation.setDeviceMetricsOverride",
                "params": {
                    "width": width, "height": height, "deviceScaleFactor": 1,
                    "mobile": width < 600,
                },
            })),
        )?;
        Ok(browser)
    }

    /// One WebDriver command of this session; its `value`.
    fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let path = format!("/session/{}{path}", self.session);
        let body = body.or_else(|| (method == "POST").then(|| serde_json::json!({})));
        let (status, answer) = json_exchange(self.port, method, &path, body.as_ref())?;
        if status != 200 {
            bail!(
                "WebDriver {method} {path}: {status} {}",
                answer["value"]["message"]
            );
        }
        Ok(answer["value"].clone())
    }

    /// Loads `url` and waits for it.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.command("POST", "/url", Some(serde_json::json!({ "url": url })))?;
        Ok(())
    }

    fn element(&self, css: &str) -> Result<String> {
        let found = self.command(
            "POST",
            "/element",
            Some(serde_json::json!({ "using": "css selector", "value": css })),
        )?;
        Ok(found[ELEMENT].as_str().context("no element id")?.to_owned())
    }

    /// Waits (up to 10 s) until `css` matches a displayed element.
    pub fn wait_visible(&self, css: &str) -> Result<()> {
        self.wait_visible_for(css, Duration::from_secs(10))
    }

    /// Waits up to `timeout` until `css` matches a displayed element.
    pub fn wait_visible_for(&self, css: &str, timeout: Duration) -> Result<()> {
        wait_for(timeout, css, || {
            let id = self.element(css).ok()?;
            let shown = self
                .command("GET", &format!("/element/{id}/displayed"), None)
                .ok()?;
            (shown == true).then_some(())
        })
    }

    /// Clicks the element `css`, once it is displayed.
    pub fn click(&self, css: &str) -> Result<()> {
        self.wait_visible(css)?;
        let id = self.element(css)?;
        self.command("POST", &format!("/element/{id}/click"), None)?;
        Ok(())
    }

    /// Types `text` into the element that has the focus, as a keyboard
    /// (or a card reader posing as one) would.
    pub fn type_keys(&self, text: &str) -> Result<()> {
        let active = self.command("GET", "/element/active", None)?;
        let id = active[ELEMENT].as_str().context("nothing has the focus")?;
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            Some(serde_json::json!({ "text": text })),
        )?;
        Ok(())
    }

    /// The `id` attribute of the focused element.
    pub fn focused_id(&self) -> Result<String> {
        Ok(self
            .script("return document.activeElement && document.activeElement.id")?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The rendered text of `css`.
    pub fn text(&self, css: &str) -> Result<String> {
        let id = self.element(css)?;
        Ok(self
            .command("GET", &format!("/element/{id}/text"), None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Waits until the text of `css` contains `wanted`; the text then.
    pub fn wait_text(&self, css: &str, wanted: &str, timeout: Duration) -> Result<String> {
        wait_for(timeout, &format!("{css} to say {wanted:?}"), || {
            self.text(css).ok().filter(|t| t.contains(wanted))
        })
        .with_context(|| format!("{css} says {:?}", self.text(css).unwrap_or_default()))
    }

    /// Runs `script` in the page (outside its Content-Security-Policy, as
    /// a debugger would); its return value.
    pub fn script(&self, script: &str) -> Result<serde_json::Value> {
        self.command(
            "POST",
            "/execute/sync",
            Some(serde_json::json!({ "script": script, "args": [] })),
        )
    }

    /// Saves a PNG of the window as `target/test-artifacts/web/NAME.png`;
    /// its path.
    pub fn screenshot(&self, name: &str) -> Result<PathBuf> {
        use base64::Engine;
        let png = self.command("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().context("no screenshot")?)?;
        let dir = workspace().join("target/test-artifacts/web");
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        fs::write(&path, png)?;
        Ok(path)
    }

    /// The cookies of the current page, HttpOnly ones included, as
    /// WebDriver describes them (`name`, `httpOnly`, `secure`, `sameSite`).
    pub fn cookies(&self) -> Result<Vec<serde_json::Value>> {
        Ok(self
            .command("GET", "/cookie", None)?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The browser's console messages at level SEVERE (errors) so far,
    /// CSP violations and failed loads among them.
    pub fn console_errors(&self) -> Result<Vec<String>> {
        let log = self.command(
            "POST",
            "/se/log",
            Some(serde_json::json!({ "type": "browser" })),
        )?;
        Ok(log
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = json_exchange(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
