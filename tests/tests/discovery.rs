//! DNS-SD with real browsers: `avahi-browse` and `ippfind` (through the
//! tests' avahi-daemon on a loopback-only network namespace) find each
//! queue with the IPP Everywhere TXT keys and subtypes, matching what the
//! queue answers over IPP; a TLS listener with passwords is `_ipps._tcp`
//! and says so; a name taken twice is renamed; a stopped appliance is
//! withdrawn.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use e2e::{Appliance, ipptool_text, mdns, run_with_timeout, self_signed_certificate, wait_for};

/// One resolved service, as `avahi-browse -p -r` prints it.
#[derive(Debug, Clone)]
struct Found {
    name: String,
    port: u16,
    txt: BTreeMap<String, String>,
}

/// Undoes avahi-browse's `\DDD` escapes.
fn unescape(text: &str) -> String {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let code = text
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|d| d.parse::<u8>().ok());
        match code {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Resolved `service_type` services whose name contains `site`.
fn browse(service_type: &str, site: &str) -> Vec<Found> {
    let out = run_with_timeout(
        Command::new("avahi-browse").args(["-p", "-r", "-t", service_type]),
        Duration::from_secs(20),
    )
    .unwrap();
    let mut found: Vec<Found> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("=;"))
        .filter_map(|line| {
            let fields: Vec<&str> = line.splitn(10, ';').collect();
            let txt = fields.get(9)?;
            let txt = txt
                .split("\" \"")
                .map(|kv| unescape(kv.trim_matches('"')))
                .filter_map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                })
                .collect();
            Some(Found {
                name: unescape(fields[3]),
                port: fields[8].parse().ok()?,
                txt,
            })
        })
        .filter(|f| f.name.contains(site))
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found.dedup_by(|a, b| a.name == b.name);
    found
}

/// Names of `service_type` (a subtype too) services containing `site`, unresolved.
fn names(service_type: &str, site: &str) -> Vec<String> {
    let out = run_with_timeout(
        Command::new("avahi-browse").args(["-p", "-t", service_type]),
        Duration::from_secs(20),
    )
    .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("+;"))
        .filter_map(|l| l.split(';').nth(3).map(unescape))
        .filter(|n| n.contains(site))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn wait_browsed(service_type: &str, site: &str, count: usize, appliance: &Appliance) -> Vec<Found> {
    wait_for(
        Duration::from_secs(30),
        &format!("{count} {service_type} services"),
        || Some(browse(service_type, site)).filter(|f| f.len() == count),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", appliance.log()))
}

/// A site name no other test (or earlier run) advertises.
fn unique_site(tag: &str) -> String {
    format!("{tag}-{}-{}", std::process::id(), e2e::free_port())
}

fn dnssd(site: &str) -> String {
    format!("site = \"{site}\"\n[dnssd]\nname = \"{{queue}} at {{site}}\"\n")
}

const PRINTER_FACTS: &str = r#"{
    NAME "the queue's own attributes"
    OPERATION Get-Printer-Attributes
    GROUP operation-attributes-tag
    ATTR charset attributes-charset utf-8
    ATTR naturalLanguage attributes-natural-language en
    ATTR uri printer-uri $uri
    STATUS successful-ok
    EXPECT printer-uuid OF-TYPE uri WITH-VALUE "urn:uuid:$uuid"
    EXPECT printer-make-and-model WITH-VALUE "$ty"
    EXPECT printer-location WITH-VALUE "$note"
    EXPECT document-format-supported WITH-VALUE "application/pdf"
    EXPECT urf-supported WITH-VALUE "W8"
}
"#;

#[test]
fn every_queue_is_found_with_the_keys_ipp_everywhere_clients_read() {
    mdns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let site = unique_site("find");
    let config = format!(
        "{}[[printer]]\nid = \"lobby\"\nuri = \"ipp://127.0.0.1:9/ipp/print\"\n\
         [[queue]]\nname = \"secure\"\nkind = \"pull\"\ndefault = true\nlocation = \"Ground floor\"\n\
         [[queue]]\nname = \"lobby-direct\"\nkind = \"direct\"\nprinter = \"lobby\"\n",
        dnssd(&site)
    );
    let mut appliance = Appliance::start(dir.path(), &config).unwrap();

    let found = wait_browsed("_ipp._tcp", &site, 2, &appliance);
    let (direct, secure) = (&found[0], &found[1]);
    assert_eq!(secure.name, format!("secure at {site}"));
    assert_eq!(direct.name, format!("lobby-direct at {site}"));
    for service in &found {
        assert_eq!(service.port, appliance.port);
        let txt = &service.txt;
        for (key, value) in [
            ("txtvers", "1"),
            ("qtotal", "1"),
            ("Color", "T"),
            ("Duplex", "T"),
            ("kind", "document"),
            ("air", "none"),
            ("URF", "V1.4,CP1,DM1,PQ3-4-5,RS300-600,SRGB24,W8"),
        ] {
            assert_eq!(
                txt.get(key).map(String::as_str),
                Some(value),
                "{key} of {txt:?}"
            );
        }
        assert!(txt["pdl"].contains("application/pdf") && txt["pdl"].contains("image/urf"));
        assert!(
            txt["adminurl"].ends_with(&format!(":{}/", appliance.api_port)),
            "{txt:?}"
        );
        assert!(!txt.contains_key("TLS") && !txt.contains_key("mopria-certified"));
    }
    assert_eq!(secure.txt["rp"], "ipp/print/secure");
    assert_eq!(direct.txt["rp"], "ipp/print/lobby-direct");
    assert_eq!(secure.txt["note"], "Ground floor");
    assert_eq!(direct.txt["ty"], "Branch print appliance (queue for lobby)");

    // What the record says is what the queue answers.
    for (queue, service) in [("secure", secure), ("lobby-direct", direct)] {
        let vars = [
            ("uuid", service.txt["UUID"].as_str()),
            ("ty", service.txt["ty"].as_str()),
            ("note", service.txt["note"].as_str()),
        ];
        let (ok, out) = ipptool_text(&appliance.uri(queue), PRINTER_FACTS, None, &vars).unwrap();
        assert!(ok, "{out}");
    }

    // The subtypes IPP Everywhere and AirPrint clients browse for.
    let both = vec![
        format!("lobby-direct at {site}"),
        format!("secure at {site}"),
    ];
    assert_eq!(names("_print._sub._ipp._tcp", &site), both);
    assert_eq!(names("_universal._sub._ipp._tcp", &site), both);

    // CUPS's own discovery tool, as driverless CUPS finds printers.
    let out = run_with_timeout(
        Command::new("ippfind")
            .args([
                "_ipp._tcp,_print",
                "-T",
                "5",
                "--txt",
                "rp",
                "ipp/print/secure",
            ])
            .args(["--name", &site, "-x", "echo", "{service_uri}", ";"]),
        Duration::from_secs(20),
    )
    .unwrap();
    let uris = String::from_utf8_lossy(&out.stdout);
    assert!(
        uris.lines()
            .any(|u| u.ends_with(&format!(":{}/ipp/print/secure", appliance.port))),
        "ippfind found {uris:?}"
    );

    // Stopped, it is withdrawn.
    appliance.stop().unwrap();
    wait_for(Duration::from_secs(30), "the services withdrawn", || {
        names("_ipp._tcp", &site).is_empty().then_some(())
    })
    .unwrap();
}

#[test]
fn a_tls_queue_with_passwords_is_ipps_and_a_taken_name_is_renamed() {
    mdns().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let site = unique_site("tls");
    let (cert, key) = self_signed_certificate(dir.path(), "ipp").unwrap();
    let config = format!(
        "{}[ipp]\nlisten = \"127.0.0.1:0\"\ntls_certificate = {:?}\ntls_private_key = {:?}\n\
         authentication = \"basic\"\n",
        dnssd(&site),
        cert.display().to_string(),
        key.display().to_string()
    );
    let tls = Appliance::start(&dir.path().join("tls"), &config).unwrap();
    let found = wait_browsed("_ipps._tcp", &site, 1, &tls);
    assert_eq!(found[0].name, format!("secure at {site}"));
    assert_eq!(found[0].port, tls.port);
    assert_eq!(found[0].txt["TLS"], "1.2");
    assert_eq!(found[0].txt["air"], "username,password");
    assert_eq!(
        names("_print._sub._ipps._tcp", &site),
        vec![format!("secure at {site}")]
    );
    assert!(
        names("_ipp._tcp", &site).is_empty(),
        "plain IPP is not served, so not advertised"
    );

    // A second appliance whose queue has the same name: it takes another.
    let plain = Appliance::start(&dir.path().join("plain"), &dnssd(&site)).unwrap();
    let other = Appliance::start(&dir.path().join("other"), &dnssd(&site)).unwrap();
    let found = wait_browsed("_ipp._tcp", &site, 2, &plain);
    let ports: Vec<u16> = found.iter().map(|f| f.port).collect();
    assert!(
        ports.contains(&plain.port) && ports.contains(&other.port),
        "{found:?}"
    );
    assert_eq!(found[0].name, format!("secure at {site}"));
    assert_eq!(found[1].name, format!("secure at {site} #2"));
    let renamed = if found[1].port == plain.port {
        &plain
    } else {
        &other
    };
    assert!(
        renamed.log().contains("advertised under another"),
        "{}",
        renamed.log()
    );
}
