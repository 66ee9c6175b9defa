//! The dashboard fed by a fake data source: every view rendered at 80x24 and at 160x48 against
//! committed snapshots, and the app's navigation, sorting, filtering and forms.

use std::{
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use mizar_db::{EndpointKind, Request};
use mizar_tui::{Action, App, Theme, fixture::sample, model::EndpointRow};
use ratatui::{
    Terminal,
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
};

/// An app that has seen `n` samples one second apart, and when to draw it.
fn app_with_samples(n: u64) -> (App, Instant) {
    let t0 = Instant::now();
    let mut app = App::new(Theme { color: false }, Duration::from_secs(1));
    for s in 1..=n {
        app.on_sample(sample(t0, s));
    }
    (app, t0 + Duration::from_millis(n * 1_000 + 300))
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(app: &mut App, keys: &str) {
    for c in keys.chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
}

fn render(app: &mut App, now: Instant, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| app.draw(f, now)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            let line: String = (0..width)
                .map(|x| buffer[(x, y)].symbol().to_string())
                .collect();
            line.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn snapshot_each_size(name: &str, app: &mut App, now: Instant) {
    insta::assert_snapshot!(format!("{name}_80x24"), render(app, now, 80, 24));
    insta::assert_snapshot!(format!("{name}_160x48"), render(app, now, 160, 48));
}

#[test]
fn pipeline_view() {
    let (mut app, now) = app_with_samples(5);
    let screen = render(&mut app, now, 80, 24);
    // The rates are the counters' differences: 1,000 deliveries a second, 5 drops.
    assert!(screen.contains("ON_XDP_REDIRECT"), "{screen}");
    assert!(screen.contains("1.00k"), "{screen}");
    assert!(screen.contains("drop_unknown_source_host"), "{screen}");
    assert!(screen.contains("sample 0.3s ago"), "{screen}");
    snapshot_each_size("pipeline", &mut app, now);
    // Selecting a reason and zooming shows its history larger, with its description.
    for _ in 0..9 {
        app.on_key(key(KeyCode::Down));
    }
    app.on_key(key(KeyCode::Enter));
    let zoomed = render(&mut app, now, 80, 24);
    assert!(
        zoomed.contains("what drop_unknown_source_host means"),
        "{zoomed}"
    );
    insta::assert_snapshot!("pipeline_zoomed_80x24", zoomed);
}

#[test]
fn endpoints_view() {
    let (mut app, now) = app_with_samples(3);
    press(&mut app, "2");
    assert_eq!(app.current_view(), "Endpoints");
    snapshot_each_size("endpoints", &mut app, now);
}

#[test]
fn topology_view() {
    let (mut app, now) = app_with_samples(2);
    press(&mut app, "3");
    // Open blue, its network web, and the hosts.
    app.on_key(key(KeyCode::Enter));
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Enter));
    app.on_key(key(KeyCode::End));
    app.on_key(key(KeyCode::Enter));
    let screen = render(&mut app, now, 160, 48);
    assert!(screen.contains("web1  10.0.1.10"), "{screen}");
    assert!(screen.contains("(this host)"), "{screen}");
    assert!(screen.contains("divides blue"), "{screen}");
    snapshot_each_size("topology", &mut app, now);
}

#[test]
fn manage_view_and_help() {
    let (mut app, now) = app_with_samples(2);
    press(&mut app, "4");
    snapshot_each_size("manage", &mut app, now);
    press(&mut app, "?");
    assert!(app.help_shown());
    let help = render(&mut app, now, 80, 24);
    assert!(help.contains("open its form"), "{help}");
    insta::assert_snapshot!("manage_help_80x24", help);
}

#[test]
fn the_dashboard_works_with_the_data_plane_down_and_without_root() {
    let t0 = Instant::now();
    let mut app = App::new(Theme { color: false }, Duration::from_secs(1));
    let mut down = sample(t0, 1);
    down.dataplane = None;
    down.root = false;
    app.on_sample(down);
    let screen = render(&mut app, t0 + Duration::from_secs(9), 80, 24);
    assert!(screen.contains("not running as root"), "{screen}");
    assert!(screen.contains("data plane shows as down"), "{screen}");
    assert!(screen.contains("(stale)"), "{screen}");
    let mut down = sample(t0, 2);
    down.dataplane = None;
    app.on_sample(down);
    let screen = render(&mut app, t0 + Duration::from_secs(2), 80, 24);
    assert!(
        screen.contains("data plane down: showing the store only"),
        "{screen}"
    );
    // The store views still work.
    press(&mut app, "2");
    assert!(render(&mut app, t0, 160, 48).contains("vr1"));
}

#[test]
fn views_switch_with_tab_and_numbers_and_q_quits() {
    let (mut app, _) = app_with_samples(1);
    assert_eq!(app.current_view(), "Pipeline");
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.current_view(), "Endpoints");
    app.on_key(key(KeyCode::BackTab));
    app.on_key(key(KeyCode::BackTab));
    assert_eq!(app.current_view(), "Captures");
    press(&mut app, "3");
    assert_eq!(app.current_view(), "Topology");
    assert_eq!(app.on_key(key(KeyCode::Char('q'))), Some(Action::Quit));
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.on_key(ctrl_c), Some(Action::Quit));
}

#[test]
fn endpoints_sort_and_filter() {
    let (mut app, now) = app_with_samples(3);
    press(&mut app, "2");
    let names = |app: &mut App| {
        let screen = render(app, now, 160, 48);
        screen
            .lines()
            .filter(|l| l.contains("10.0.1."))
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .map(|l| l.trim_start_matches('│').trim().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&mut app),
        ["blue web web1", "blue web web2", "red web web1"]
    );
    // Sort by RX/s, descending: blue's web1 (1,000/s) first; web2 (no counters) last.
    for _ in 0..8 {
        press(&mut app, ">");
    }
    press(&mut app, "r");
    let sorted = names(&mut app);
    assert_eq!(
        sorted.first().map(String::as_str),
        Some("blue web web1"),
        "{sorted:?}"
    );
    assert_eq!(
        sorted.last().map(String::as_str),
        Some("blue web web2"),
        "{sorted:?}"
    );
    // The next sample shares the rows (the store did not change) and red's web1 overtakes
    // blue's: the order follows at once.
    let mut next = (**app.model().latest().unwrap()).clone();
    next.taken += Duration::from_secs(1);
    for c in &mut next.counters {
        let red = next.endpoints[c.row].vpc == "red";
        c.rx.packets += if red { 5_000 } else { 1_000 };
    }
    app.on_sample(next);
    assert_eq!(
        names(&mut app).first().map(String::as_str),
        Some("red web web1")
    );
    // Typing a filter: q is text, not quit, while typing.
    press(&mut app, "/red");
    assert_eq!(app.on_key(key(KeyCode::Char('q'))), None);
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Enter));
    assert_eq!(names(&mut app), ["red web web1"]);
    assert!(render(&mut app, now, 80, 24).contains("1 of 3 match"));
    app.on_key(key(KeyCode::Esc));
    assert_eq!(names(&mut app).len(), 3);
}

#[test]
fn endpoints_table_draws_only_its_window_at_100k_rows() {
    let t0 = Instant::now();
    let mut app = App::new(Theme { color: false }, Duration::from_secs(1));
    let mut big = sample(t0, 1);
    let template = big.endpoints[0].clone();
    big.endpoints = Arc::new(
        (0..100_000u32)
            .map(|i| EndpointRow {
                name: format!("ep{i:06}"),
                ip: Ipv4Addr::from(0x0a00_0000 + i),
                ..template.clone()
            })
            .collect::<Vec<_>>()
            .into(),
    );
    app.on_sample(big);
    press(&mut app, "2");
    app.on_key(key(KeyCode::End));
    let screen = render(&mut app, t0, 80, 24);
    assert!(screen.contains("ep099999"), "{screen}");
    assert!(screen.contains("100000/100000"), "{screen}");
    // The last window of rows, and nothing before it: 24 lines leave 18 rows of table.
    let rows: Vec<&str> = screen.lines().filter(|l| l.contains("10.1.")).collect();
    assert_eq!(rows.len(), 18, "{screen}");
    assert!(!screen.contains("ep099981"), "{screen}");
}

#[test]
fn manage_forms_validate_like_the_cli_and_confirm_deletes() {
    let (mut app, now) = app_with_samples(1);
    press(&mut app, "4");
    // The first form: add VPC.
    app.on_key(key(KeyCode::Enter));
    press(&mut app, "green");
    app.on_key(key(KeyCode::Tab));
    press(&mut app, "3OO");
    app.on_key(key(KeyCode::Tab));
    press(&mut app, "10.0.0.0/33");
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    let screen = render(&mut app, now, 80, 24);
    assert!(screen.contains("invalid value '3OO' for vni"), "{screen}");
    // Fix the VNI: the CIDR's error is the one Ipv4Net gives the CLI.
    app.on_key(key(KeyCode::BackTab));
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Backspace));
    press(&mut app, "00");
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    let cidr_err = "10.0.0.0/33"
        .parse::<mizar_db::Ipv4Net>()
        .unwrap_err()
        .to_string();
    let screen = render(&mut app, now, 160, 48);
    assert!(
        screen.contains(&format!("invalid value '10.0.0.0/33' for cidr: {cidr_err}")),
        "{screen}"
    );
    app.on_key(key(KeyCode::Tab));
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Backspace));
    press(&mut app, "16");
    let action = app.on_key(key(KeyCode::Enter));
    let Some(Action::Change(Request::AddVpc(vpc))) = action else {
        panic!("expected an add-VPC request, got {action:?}");
    };
    assert_eq!((vpc.name.as_str(), vpc.vni), ("green", 300));
    app.on_change_done(Ok("VPC green added (VNI 300)".into()));
    assert_eq!(app.message().unwrap().text, "VPC green added (VNI 300)");

    // Delete a VPC: asked first; n cancels, y sends it.
    for _ in 0..10 {
        app.on_key(key(KeyCode::Down));
    }
    app.on_key(key(KeyCode::Enter));
    press(&mut app, "blue");
    app.on_key(key(KeyCode::Tab));
    press(&mut app, "yes");
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    assert!(render(&mut app, now, 80, 24).contains("delete VPC blue and everything in it?"));
    assert_eq!(app.on_key(key(KeyCode::Char('n'))), None);
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    let action = app.on_key(key(KeyCode::Char('y')));
    assert_eq!(
        action,
        Some(Action::Change(Request::DeleteVpc {
            name: "blue".into(),
            cascade: true
        }))
    );
    // While it is being made, another change waits.
    app.on_key(key(KeyCode::Enter));
    press(&mut app, "red");
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    app.on_key(key(KeyCode::Char('y')));
    assert!(app.message().unwrap().error);
    app.on_change_done(Err("VPC \"blue\" does not exist".into()));
    assert!(app.message().unwrap().error);
}

#[test]
fn add_endpoint_form_offers_this_host() {
    let (mut app, _) = app_with_samples(1);
    press(&mut app, "4");
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Enter));
    for text in ["blue", "web3", "10.0.1.12", "02:00:0a:00:01:0c"] {
        press(&mut app, text);
        app.on_key(key(KeyCode::Tab));
    }
    // host is already this host; network, veth and netns left empty; type function.
    for _ in 0..4 {
        app.on_key(key(KeyCode::Tab));
    }
    press(&mut app, "function");
    let action = app.on_key(key(KeyCode::Enter));
    let Some(Action::Change(Request::AddEndpoint { endpoint, netns })) = action else {
        panic!("expected an add-endpoint request, got {action:?}");
    };
    assert_eq!(endpoint.host, "h1");
    assert_eq!(endpoint.kind, EndpointKind::Function);
    assert_eq!(endpoint.ip, Ipv4Addr::new(10, 0, 1, 12));
    assert_eq!(netns, None);
}

#[test]
fn after_a_change_the_form_list_can_go_back_to_the_first_form() {
    let (mut app, now) = app_with_samples(1);
    press(&mut app, "4");
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Enter));
    for text in ["blue", "web3", "10.0.1.12", "02:00:0a:00:01:0c"] {
        press(&mut app, text);
        app.on_key(key(KeyCode::Tab));
    }
    assert!(matches!(
        app.on_key(key(KeyCode::Enter)),
        Some(Action::Change(_))
    ));
    app.on_change_done(Ok("done".into()));
    press(&mut app, "2");
    press(&mut app, "4");
    press(&mut app, "g");
    app.on_key(key(KeyCode::Enter));
    let screen = render(&mut app, now, 100, 30);
    assert!(screen.contains("┌ add VPC"), "{screen}");
}

/// Opens the Manage form titled `title` (found by walking the list, so the test does not
/// depend on its position).
fn open_form(app: &mut App, now: Instant, title: &str) {
    press(app, "4g");
    for _ in 0..60 {
        if render(app, now, 80, 24).contains(&format!("┌ {title} ")) {
            app.on_key(key(KeyCode::Enter));
            return;
        }
        app.on_key(key(KeyCode::Down));
    }
    panic!("no form {title:?} in Manage");
}

/// The label of the form field the cursor is in, and the form error shown, as drawn.
fn form_state(app: &mut App, now: Instant) -> (String, String) {
    let screen = render(app, now, 160, 48);
    let field = screen
        .lines()
        .find(|l| l.contains('█'))
        .and_then(|l| l.split('│').find(|part| part.contains('█')))
        .and_then(|f| f.split_whitespace().next())
        .unwrap_or_default()
        .trim_end_matches('*')
        .to_owned();
    (field, screen)
}

#[test]
fn function_rule_forms_build_the_clis_requests_and_refuse_what_it_refuses() {
    let (mut app, now) = app_with_samples(1);
    open_form(&mut app, now, "add ACL rule");
    // vpc, direction, action, src, dst (left any), proto, port.
    for text in [
        "blue",
        "ingress",
        "deny",
        "label:role=web",
        "",
        "tcp",
        "70000",
    ] {
        press(&mut app, text);
        app.on_key(key(KeyCode::Tab));
    }
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    let (_, screen) = form_state(&mut app, now);
    assert!(
        screen.contains("invalid value '70000' for port"),
        "{screen}"
    );
    app.on_key(key(KeyCode::BackTab));
    for _ in 0..5 {
        app.on_key(key(KeyCode::Backspace));
    }
    press(&mut app, "22");
    let action = app.on_key(key(KeyCode::Enter));
    let Some(Action::Change(Request::AddAclRule {
        vpc,
        rule,
        position,
        cut,
    })) = action
    else {
        panic!("expected an ACL rule, got {action:?}");
    };
    assert_eq!((vpc.as_str(), position, cut), ("blue", None, false));
    assert_eq!(
        rule.to_string(),
        "ingress deny label:role=web -> any tcp port 22"
    );
    app.on_change_done(Ok("done".into()));

    open_form(&mut app, now, "ddos SYN threshold");
    press(&mut app, "200");
    let action = app.on_key(key(KeyCode::Enter));
    assert_eq!(
        action,
        Some(Action::Change(Request::SetDdosSynLimit {
            vpc: None,
            syns: 200,
            window_ms: 1000
        }))
    );
}

#[test]
fn change_forms_fill_in_what_the_object_is_and_send_only_a_whole_object() {
    let (mut app, now) = app_with_samples(1);
    open_form(&mut app, now, "change endpoint");
    assert_eq!(form_state(&mut app, now).0, "vpc");
    press(&mut app, "red");
    app.on_key(key(KeyCode::Tab));
    press(&mut app, "web1");
    // Leaving the name fills in the rest: red's web1, not blue's of the same name.
    app.on_key(key(KeyCode::Tab));
    assert_eq!(form_state(&mut app, now).0, "ip");
    let screen = render(&mut app, now, 160, 48);
    for shown in ["10.0.1.10", "02:00:0b:00:01:0a", "vr1", "simple"] {
        assert!(screen.contains(shown), "{shown} not filled in:\n{screen}");
    }
    assert!(
        !screen.contains("02:00:0a:00:01:0a"),
        "blue's MAC:\n{screen}"
    );
    // Change the MAC only.
    app.on_key(key(KeyCode::Tab));
    for _ in 0.."02:00:0b:00:01:0a".len() {
        app.on_key(key(KeyCode::Backspace));
    }
    press(&mut app, "02:00:0b:00:01:99");
    let action = app.on_key(key(KeyCode::Enter));
    let Some(Action::Change(Request::ChangeEndpoint(ep))) = action else {
        panic!("expected a change-endpoint request, got {action:?}");
    };
    assert_eq!((ep.vpc.as_str(), ep.name.as_str()), ("red", "web1"));
    assert_eq!(ep.mac.to_string(), "02:00:0b:00:01:99");
    assert_eq!(ep.ip, Ipv4Addr::new(10, 0, 1, 10));
    assert_eq!((ep.host.as_str(), ep.network.as_str()), ("h1", "web"));
    assert_eq!(ep.veth.as_deref(), Some("vr1"));
    assert!(!ep.bypass_decap && ep.backends.is_empty());
    app.on_change_done(Ok("endpoint red/web1 changed".into()));

    // An unknown name says so; Enter on the name fetches rather than submits.
    open_form(&mut app, now, "change VPC");
    press(&mut app, "green");
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    let (_, screen) = form_state(&mut app, now);
    assert!(screen.contains("no VPC green in the store"), "{screen}");
    for _ in 0.."green".len() {
        app.on_key(key(KeyCode::Backspace));
    }
    press(&mut app, "blue");
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    let (field, screen) = form_state(&mut app, now);
    assert_eq!(field, "vni", "{screen}");
    assert!(!screen.contains("no VPC"), "{screen}");
    for _ in 0..3 {
        app.on_key(key(KeyCode::Backspace));
    }
    press(&mut app, "OOPS");
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    let (_, screen) = form_state(&mut app, now);
    assert!(screen.contains("invalid value 'OOPS' for vni"), "{screen}");
    for _ in 0..4 {
        app.on_key(key(KeyCode::Backspace));
    }
    press(&mut app, "150");
    let action = app.on_key(key(KeyCode::Enter));
    assert_eq!(
        action,
        Some(Action::Change(Request::ChangeVpc(mizar_db::Vpc {
            name: "blue".into(),
            vni: 150,
            cidr: "10.0.0.0/16".parse().unwrap(),
        })))
    );
}

#[test]
fn e_on_an_endpoint_opens_its_change_form_filled_in() {
    let (mut app, now) = app_with_samples(2);
    press(&mut app, "2/red");
    app.on_key(key(KeyCode::Enter));
    let listed = render(&mut app, now, 160, 48);
    assert!(listed.contains("1 of 3 match"), "{listed}");
    press(&mut app, "e");
    assert_eq!(app.current_view(), "Manage");
    let (field, screen) = form_state(&mut app, now);
    assert!(screen.contains("┌ change endpoint"), "{screen}");
    assert_eq!(field, "ip", "{screen}");
    for shown in ["red", "web1", "10.0.1.10", "02:00:0b:00:01:0a", "vr1"] {
        assert!(screen.contains(shown), "{shown} not filled in:\n{screen}");
    }
    // Submitted unchanged, it asks for exactly what the endpoint is.
    let action = app.on_key(key(KeyCode::Enter));
    let Some(Action::Change(Request::ChangeEndpoint(ep))) = action else {
        panic!("expected a change-endpoint request, got {action:?}");
    };
    assert_eq!((ep.vpc.as_str(), ep.name.as_str()), ("red", "web1"));
    assert_eq!(ep.mac.to_string(), "02:00:0b:00:01:0a");
}

#[test]
fn the_change_network_form_lets_a_default_gateway_follow_a_new_prefix() {
    let (mut app, now) = app_with_samples(1);
    open_form(&mut app, now, "change network");
    for text in ["blue", "web"] {
        press(&mut app, text);
        app.on_key(key(KeyCode::Tab));
    }
    // Filled in: the prefix, and no gateway (it is the prefix's default, 10.0.1.1).
    let (field, screen) = form_state(&mut app, now);
    assert_eq!(field, "cidr", "{screen}");
    assert!(screen.contains("10.0.1.0/24"), "{screen}");
    assert!(!screen.contains("10.0.1.1 "), "{screen}");
    for _ in 0.."10.0.1.0/24".len() {
        app.on_key(key(KeyCode::Backspace));
    }
    press(&mut app, "10.0.0.0/23");
    let action = app.on_key(key(KeyCode::Enter));
    let Some(Action::Change(Request::ChangeNetwork(net))) = action else {
        panic!("expected a change-network request, got {action:?}");
    };
    assert_eq!(net.cidr.to_string(), "10.0.0.0/23");
    assert_eq!(
        net.gateway,
        Ipv4Addr::new(10, 0, 0, 1),
        "the new prefix's default"
    );
}

#[test]
fn e_in_the_topology_opens_the_selected_objects_change_form() {
    let (mut app, now) = app_with_samples(1);
    // The first row is VPC blue.
    press(&mut app, "3e");
    assert_eq!(app.current_view(), "Manage");
    let (field, screen) = form_state(&mut app, now);
    assert!(screen.contains("┌ change VPC"), "{screen}");
    assert_eq!(field, "vni", "{screen}");
    assert!(
        screen.contains("blue") && screen.contains("100"),
        "{screen}"
    );

    // The hosts' node has no form; a host has one.
    app.on_key(key(KeyCode::Esc));
    press(&mut app, "3G");
    press(&mut app, "e");
    assert_eq!(app.current_view(), "Topology");
    app.on_key(key(KeyCode::Enter));
    app.on_key(key(KeyCode::Down));
    press(&mut app, "e");
    assert_eq!(app.current_view(), "Manage");
    let (_, screen) = form_state(&mut app, now);
    assert!(screen.contains("┌ change host"), "{screen}");
    assert!(screen.contains("192.168.50.1"), "{screen}");
}

#[test]
fn functions_view() {
    let (mut app, now) = app_with_samples(5);
    press(&mut app, "5");
    assert_eq!(app.current_view(), "Functions");
    snapshot_each_size("functions", &mut app, now);
}

#[test]
fn the_functions_view_changes_chains_through_requests() {
    use mizar_db::ChainEdit;
    let (mut app, now) = app_with_samples(3);
    press(&mut app, "5");
    let chain = |stage: &str, edit| {
        Some(Action::Change(Request::EditChain {
            host: None,
            stage: stage.into(),
            edit,
        }))
    };
    // Rows: ON_XDP_PASS, ON_XDP_REDIRECT, its functions 1 and 2, ON_XDP_TX, its function 1, ...
    assert_eq!(
        app.on_key(key(KeyCode::Char('a'))),
        None,
        "a asks which function"
    );
    assert!(render(&mut app, now, 80, 24).contains("add which function? 1 count · 2 ddos"));
    assert_eq!(
        app.on_key(key(KeyCode::Char('2'))),
        chain(
            "ON_XDP_PASS",
            ChainEdit::Add {
                function: "ddos".into(),
                at: None
            }
        ),
        "a on an empty stage appends to its chain; the digit is no view switch here"
    );
    assert_eq!(app.current_view(), "Functions");
    app.on_change_done(Ok("chain at ON_XDP_PASS: count".into()));
    press(&mut app, "jj");
    assert_eq!(
        app.on_key(key(KeyCode::Char('K'))),
        None,
        "the first function cannot move earlier"
    );
    assert_eq!(
        app.on_key(key(KeyCode::Char('J'))),
        chain("ON_XDP_REDIRECT", ChainEdit::Move { from: 1, to: 2 })
    );
    app.on_change_done(Ok("moved".into()));
    assert_eq!(
        app.on_key(key(KeyCode::Char('d'))),
        chain(
            "ON_XDP_REDIRECT",
            ChainEdit::Enable {
                position: 1,
                enabled: false
            }
        ),
        "d disables an enabled function"
    );
    app.on_change_done(Ok("disabled".into()));
    press(&mut app, "j");
    assert_eq!(
        app.on_key(key(KeyCode::Char('J'))),
        None,
        "the last cannot move later"
    );
    // An endpoint's chain is shown after the host's, and changed elsewhere (Manage, CLI).
    let screen = render(&mut app, now, 100, 30);
    assert!(screen.contains("ep:blue/web1 1."), "{screen}");
    // A removal asks first, and anything but y cancels it.
    assert_eq!(app.on_key(key(KeyCode::Char('x'))), None);
    assert!(
        render(&mut app, now, 80, 24)
            .contains("remove function 2 of the chain at ON_XDP_REDIRECT? y")
    );
    assert_eq!(app.on_key(key(KeyCode::Char('n'))), None);
    assert_eq!(app.on_key(key(KeyCode::Char('x'))), None);
    assert_eq!(
        app.on_key(key(KeyCode::Char('y'))),
        chain("ON_XDP_REDIRECT", ChainEdit::Remove { position: 2 })
    );
    app.on_change_done(Ok("removed".into()));
    // Down to the endpoint's function (after ON_XDP_TX and its function): read-only here.
    press(&mut app, "jjj");
    assert!(render(&mut app, now, 100, 30).contains("ep:blue/web1"));
    for k in ['x', 'K', 'J'] {
        assert_eq!(
            app.on_key(key(KeyCode::Char(k))),
            None,
            "{k} on a scoped row"
        );
    }
    assert!(!render(&mut app, now, 100, 30).contains("? y to confirm"));
}

#[test]
fn captures_view() {
    let (mut app, now) = app_with_samples(4);
    let t0 = now - Duration::from_millis(4_300);
    let mut with_capture = sample(t0, 5);
    with_capture.capture = Some(mizar_tui::fixture::capture(2));
    app.on_sample(with_capture);
    press(&mut app, "6");
    assert_eq!(app.current_view(), "Captures");
    snapshot_each_size("captures", &mut app, now + Duration::from_secs(1));
}

#[test]
fn the_captures_view_starts_and_stops_captures_with_what_the_form_says() {
    use mizar_tui::CaptureRequest;
    let (mut app, now) = app_with_samples(2);
    press(&mut app, "6");
    // s: the form as it is (transit's entry and verdict, everything, until stopped).
    assert_eq!(
        app.on_key(key(KeyCode::Char('s'))),
        Some(Action::StartCapture(CaptureRequest {
            points: "transit:entry,transit:verdict".into(),
            filter: String::new(),
            count: None,
            file: None,
        }))
    );
    // Nothing runs yet: x says so.
    assert_eq!(app.on_key(key(KeyCode::Char('x'))), None);
    assert!(render(&mut app, now, 100, 30).contains("no capture is running"));
    // e edits: the digits and q are text there, not view switches or quit.
    press(&mut app, "e");
    app.on_key(key(KeyCode::Tab));
    press(&mut app, "vpc blue and icmp");
    app.on_key(key(KeyCode::Tab));
    press(&mut app, "1q");
    assert_eq!(app.current_view(), "Captures");
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        None,
        "a count of 1q is refused"
    );
    assert!(render(&mut app, now, 100, 30).contains("count: \"1q\" is not a number"));
    app.on_key(key(KeyCode::Backspace));
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Some(Action::StartCapture(CaptureRequest {
            points: "transit:entry,transit:verdict".into(),
            filter: "vpc blue and icmp".into(),
            count: Some(1),
            file: None,
        }))
    );
    app.on_capture_answer(Ok("capturing at transit:entry,transit:verdict".into()));
    // While one runs, s refuses and x stops it.
    let mut running = sample(now - Duration::from_secs(3), 3);
    running.capture = Some(mizar_tui::fixture::capture(1));
    app.on_sample(running);
    assert_eq!(app.on_key(key(KeyCode::Char('s'))), None);
    assert!(render(&mut app, now, 100, 30).contains("a capture is running"));
    assert_eq!(
        app.on_key(key(KeyCode::Char('x'))),
        Some(Action::StopCapture)
    );
    let screen = render(&mut app, now, 160, 48);
    assert!(
        screen.contains("dropped by acl: denied_by_rule"),
        "{screen}"
    );
    assert!(screen.contains("icmp echo"), "{screen}");
}
