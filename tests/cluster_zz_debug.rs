mod common;
use common::cluster::*;
use common::*;

#[test]
fn debug_notices() {
    for round in 0..3 {
    let c = start_cluster(3);
    let mut cl: Vec<Client> = (0..3).map(|i| c[i].ws(SYS_A)).collect();
    for i in 0..3 {
        let id = cl[i].client_id.clone();
        c[i].bind(SYS_A, &id, "g", "", "");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let names: Vec<String> = cl.iter().map(|c| c.client_id.clone()).collect();
    let mut bad = false;
    for (j, x) in cl.iter_mut().enumerate() {
        let frames = x.drain(std::time::Duration::from_secs(2));
        let got: Vec<usize> = frames.iter().map(|f| {
            let d: serde_json::Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
            names.iter().position(|n| n == d["clientId"].as_str().unwrap()).unwrap()
        }).collect();
        eprintln!("round {round} member {j} (node {}) got notices of {:?}", j + 1, got);
        if got != (j..3).collect::<Vec<_>>() { bad = true; }
    }
    assert!(!bad);
    }
}
