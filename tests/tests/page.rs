//! The web page (`serve --http`) in a real headless Chromium, driven by selenium: it loads and
//! lists the models, a generation with an uploaded primer completes, the roll is drawn (primer
//! and generated notes in their colours), the audio element holds a playable WAV of the right
//! duration, the same file harmonised as a melody comes back as long as it is, three pieces at
//! once are listed by seed with their files, and a text file as primer or 0 frames shows the server's message on the page while
//! the server goes on. The HTTP API answers an unknown model with 404 and a JSON error.

use std::path::PathBuf;

use serve::server::{Server, ServerConfig};

const DRIVE_THE_PAGE: &str = r##"
import json, sys, time, urllib.request, urllib.error
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, primer, text_file, screenshot = sys.argv[1:5]
options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1300,950", "--autoplay-policy=no-user-gesture-required"]:
    options.add_argument(argument)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
result = {}
try:
    wait = WebDriverWait(driver, 60)
    driver.get(url)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) >= 2)
    result["models"] = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#model option")]

    def set_value(element_id, value):
        element = driver.find_element(By.ID, element_id)
        element.clear()
        element.send_keys(str(value))

    def generate():
        driver.find_element(By.ID, "generate").click()
        wait.until(lambda d: d.find_element(By.ID, "generate").is_enabled()
                   and (d.find_element(By.ID, "status").text.startswith("done")
                        or d.find_element(By.ID, "error").text))

    set_value("frames", 32)
    set_value("seed", 7)
    driver.find_element(By.ID, "primer").send_keys(primer)
    generate()
    result["status"] = driver.find_element(By.ID, "status").text
    result["error"] = driver.find_element(By.ID, "error").text
    # Pixels of each colour on the canvas: primer grey and generated blue.
    result["painted"] = driver.execute_script("""
        const c = document.getElementById('roll'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let primer = 0, generated = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (d[i] === 0x9a && d[i + 1] === 0xa4 && d[i + 2] === 0xb2) primer++;
            if (d[i] === 0x29 && d[i + 1] === 0x62 && d[i + 2] === 0xff) generated++;
        }
        return [primer, generated];""")
    wait.until(lambda d: d.execute_script("return document.getElementById('audio').readyState >= 1"))
    result["audio_duration"] = driver.execute_script("return document.getElementById('audio').duration")
    result["audio_source"] = driver.execute_script("return document.getElementById('audio').currentSrc")
    result["downloads"] = [driver.find_element(By.ID, i).get_attribute("href") or "" for i in ("download-mid", "download-wav")]
    driver.save_screenshot(screenshot)

    # The same file harmonised as a melody: as many frames as it has, none of them a primer.
    driver.find_element(By.ID, "harmonize").click()
    generate()
    result["harmonized_status"] = driver.find_element(By.ID, "status").text
    result["harmonized_error"] = driver.find_element(By.ID, "error").text
    driver.find_element(By.ID, "harmonize").click()

    # Three pieces with seeds 7, 8 and 9, each listed with its files.
    set_value("count", 3)
    generate()
    result["count_status"] = driver.find_element(By.ID, "status").text
    result["count_links"] = [[a.text, a.get_attribute("download"), (a.get_attribute("href") or "")[:5]]
                             for a in driver.find_elements(By.CSS_SELECTOR, "#pieces a")]
    set_value("count", 1)

    driver.find_element(By.ID, "primer").send_keys(text_file)
    generate()
    result["bad_primer_error"] = driver.find_element(By.ID, "error").text

    driver.find_element(By.ID, "primer").clear()
    set_value("frames", 0)
    generate()
    result["zero_frames_error"] = driver.find_element(By.ID, "error").text

    set_value("frames", 8)
    generate()
    result["after_errors_status"] = driver.find_element(By.ID, "status").text
finally:
    driver.quit()

try:
    urllib.request.urlopen(urllib.request.Request(url + "api/generate?model=nope&frames=4", method="POST"))
except urllib.error.HTTPError as error:
    result["unknown_model"] = [error.code, json.load(error)["error"]]
print(json.dumps(result))
"##;

fn browser_ready() -> bool {
    let found = |program: &str| {
        std::process::Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found("chromium") && found("chromedriver") {
        return true;
    }
    eprintln!("skipped: no chromium and chromedriver (scripts/test.sh installs them where it may)");
    false
}

/// Serve the shipped models (with `token`, if any) and the page on free ports of 127.0.0.1, run
/// `drive` with the page's URL on a blocking thread (the browser), then stop the server.
fn with_page<T: Send + 'static>(
    token: Option<&str>,
    drive: impl FnOnce(String) -> T + Send + 'static,
) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = ServerConfig {
        token: token.map(str::to_owned),
        ..ServerConfig::cpu(pianoroll_tests::repo_root().join("models"))
    };
    runtime.block_on(async {
        let server = Server::load(config).unwrap();
        let grpc = serve::server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let page = serve::server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let url = format!("http://{}/", page.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.with_http(page).run(grpc, async {
            let _ = stopped.await;
        }));
        let result = tokio::task::spawn_blocking(move || drive(url))
            .await
            .unwrap();
        let _ = stop.send(());
        task.await.unwrap().unwrap();
        result
    })
}

#[test]
fn the_page_generates_draws_and_plays_music() {
    let Some(python) = pianoroll_tests::python() else {
        return;
    };
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("notes.mid");
    std::fs::write(&text_file, "these are notes, not MIDI\n").unwrap();
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("page.png");
    let primer = pianoroll_tests::nottingham().join("test/ashover_simple_chords_11.mid");
    let seen = with_page(None, move |url| {
        let arguments = [
            url.as_ref(),
            primer.as_os_str(),
            text_file.as_os_str(),
            screenshot.as_os_str(),
        ];
        pianoroll_tests::python_json(&python, DRIVE_THE_PAGE, &arguments)
    });
    eprintln!("{seen:#}");
    assert_eq!(
        seen["models"],
        serde_json::json!(["lstm-nade", "rwkv-nade"])
    );
    assert_eq!(seen["error"], "", "{seen}");
    assert!(
        seen["status"]
            .as_str()
            .unwrap()
            .starts_with("done: 193 primer frames, 32 generated, in D major, 6/8"),
        "the primer's key and meter: {seen}"
    );
    let painted = &seen["painted"];
    assert!(painted[0].as_u64().unwrap() > 100, "primer drawn: {seen}");
    assert!(
        painted[1].as_u64().unwrap() > 10,
        "generated notes drawn: {seen}"
    );
    // 193 + 32 frames of 0.25 s.
    let duration = seen["audio_duration"].as_f64().unwrap();
    assert!((duration - 56.25).abs() < 0.25, "audio lasts {duration} s");
    assert!(seen["audio_source"].as_str().unwrap().starts_with("blob:"));
    for href in seen["downloads"].as_array().unwrap() {
        assert!(href.as_str().unwrap().starts_with("blob:"), "{seen}");
    }
    assert_eq!(seen["harmonized_error"], "", "{seen}");
    assert!(
        seen["harmonized_status"]
            .as_str()
            .unwrap()
            .starts_with("done: 0 primer frames, 193 generated, in D major, 6/8"),
        "the melody harmonised, as long as it is: {seen}"
    );
    assert!(
        seen["count_status"]
            .as_str()
            .unwrap()
            .starts_with("done: 3 pieces (seeds 7–9)"),
        "{seen}"
    );
    let links: Vec<(String, String)> = seen["count_links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l[2], "blob:", "{seen}");
            (l[0].as_str().unwrap().into(), l[1].as_str().unwrap().into())
        })
        .collect();
    let expected: Vec<(String, String)> = (7..=9)
        .flat_map(|seed| {
            [
                ("MIDI".into(), format!("{seed}.mid")),
                ("WAV".into(), format!("{seed}.wav")),
            ]
        })
        .collect();
    assert_eq!(links, expected);
    let bad = seen["bad_primer_error"].as_str().unwrap();
    assert!(bad.contains("primer") && bad.contains("MIDI"), "{bad}");
    let zero = seen["zero_frames_error"].as_str().unwrap();
    assert!(zero.contains("frames"), "{zero}");
    assert!(
        seen["after_errors_status"]
            .as_str()
            .unwrap()
            .starts_with("done"),
        "the server goes on: {seen}"
    );
    assert_eq!(seen["unknown_model"][0], 404);
}

const SIGN_IN: &str = r##"
import json, sys, urllib.request, urllib.error
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, token = sys.argv[1:3]
options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]:
    options.add_argument(argument)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
result = {}
try:
    wait = WebDriverWait(driver, 60)
    driver.get(url)
    shown = lambda element_id: driver.find_element(By.ID, element_id).is_displayed()
    wait.until(lambda d: shown("signin"))
    result["asked"] = driver.find_element(By.ID, "error").text
    result["form_hidden_before"] = not shown("form")

    def sign_in(value):
        field = driver.find_element(By.ID, "token")
        field.clear()
        field.send_keys(value)
        driver.find_element(By.ID, "signin-button").click()

    sign_in("not-the-token")
    wait.until(lambda d: "failed" in d.find_element(By.ID, "error").text)
    result["wrong"] = driver.find_element(By.ID, "error").text
    sign_in(token)
    wait.until(lambda d: shown("form") and len(d.find_elements(By.CSS_SELECTOR, "#model option")) >= 2)
    result["signin_hidden_after"] = not shown("signin")
    frames = driver.find_element(By.ID, "frames")
    frames.clear()
    frames.send_keys("8")
    driver.find_element(By.ID, "generate").click()
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("done")
               or d.find_element(By.ID, "error").text)
    result["status"] = driver.find_element(By.ID, "status").text
    result["error"] = driver.find_element(By.ID, "error").text
    result["kept"] = driver.execute_script("return sessionStorage.getItem('pianoroll-token')") == token
finally:
    driver.quit()

# The API itself, without the page: no token, a wrong one, the scheme in lower case.
def status(headers):
    try:
        return urllib.request.urlopen(urllib.request.Request(url + "api/models", headers=headers)).status
    except urllib.error.HTTPError as error:
        return [error.code, json.load(error)["error"], error.headers.get("www-authenticate")]
result["api"] = [status({}), status({"Authorization": "Bearer wrong"}),
                 status({"Authorization": "bearer " + token})]
print(json.dumps(result))
"##;

/// `--token-file` with the page: the page asks for the token, refuses a wrong one, then lists,
/// generates and plays with the right one; the API answers 401 with a JSON error without it.
#[test]
fn the_page_signs_in_with_the_servers_token() {
    let Some(python) = pianoroll_tests::python() else {
        return;
    };
    if !browser_ready() {
        return;
    }
    let seen = with_page(Some("page-token-1"), move |url| {
        pianoroll_tests::python_json(&python, SIGN_IN, &[url.as_ref(), "page-token-1".as_ref()])
    });
    eprintln!("{seen:#}");
    assert_eq!(seen["asked"], "sign in with the server's token");
    assert_eq!(seen["form_hidden_before"], true);
    assert!(
        seen["wrong"].as_str().unwrap().contains("wrong token"),
        "{seen}"
    );
    assert_eq!(seen["signin_hidden_after"], true);
    assert_eq!(seen["error"], "", "{seen}");
    assert!(
        seen["status"]
            .as_str()
            .unwrap()
            .starts_with("done: 0 primer frames, 8 generated"),
        "{seen}"
    );
    assert_eq!(seen["kept"], true);
    let api = &seen["api"];
    assert_eq!(api[0][0], 401);
    assert!(
        api[0][1].as_str().unwrap().contains("Bearer TOKEN"),
        "{api}"
    );
    assert_eq!(api[0][2], "Bearer");
    assert_eq!(api[1][0], 401);
    assert_eq!(api[2], 200, "the scheme is case-insensitive");
}
