fn main() {
    let mut cfg = vigil_model::Config::default();
    let args: Vec<String> = std::env::args().collect();
    for a in &args[1..] {
        let (k, v) = a.split_once('=').unwrap();
        match k {
            "n" => cfg.nodes = v.parse().unwrap(),
            "seed" => cfg.seed = v.parse().unwrap(),
            "lease" => cfg.lease = v.parse().unwrap(),
            "gen" => cfg.max_generation = v.parse().unwrap(),
            "crash" => cfg.max_crashes = v.parse().unwrap(),
            "round" => cfg.max_round = v.parse().unwrap(),
            "msgs" => cfg.max_messages = v.parse().unwrap(),
            "depth" => cfg.max_depth = v.parse().unwrap(),
            "view" => cfg.start_view = u8::from_str_radix(v, 2).unwrap(),
            "fix" => {
                cfg.seeding = match v {
                    "0" => vigil_model::Seeding::Count,
                    "1" => vigil_model::Seeding::All,
                    _ => vigil_model::Seeding::AllSettle,
                }
            }
            "selfrep" => cfg.dropped_acceptor_reports_itself = v == "1",
            "loss" => cfg.loss = v == "1",
            "dup" => cfg.duplication = v == "1",
            "part" => cfg.partitions = v == "1",
            "sab" => {
                cfg.sabotage = Some(match v {
                    "half" => vigil_model::Sabotage::AnyHalfWins,
                    "fewer" => vigil_model::Sabotage::FewerAccepts,
                    "zero" => vigil_model::Sabotage::ZeroSettle,
                    _ => vigil_model::Sabotage::LowestPrimary,
                })
            }
            _ => panic!("{k}"),
        }
    }
    let r = vigil_model::check(&cfg);
    println!(
        "states {} depth {} complete {} {:?}",
        r.states, r.depth, r.complete, r.elapsed
    );
    if let Some(v) = r.violation {
        print!("{v}");
    }
}
