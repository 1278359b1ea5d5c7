use super::*;
use crate::wire::{Answer, WireError};

#[test]
fn dump_vectors() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/sip");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        if p.extension().and_then(|e| e.to_str()) != Some("txt") {
            continue;
        }
        let data = Bytes::from(std::fs::read(&p).unwrap());
        match parse_datagram(data, &Limits::default()) {
            Ok(m) => eprintln!(
                "{}: OK body={} \n{}",
                p.display(),
                m.body().len(),
                String::from_utf8_lossy(&m.serialize())
            ),
            Err(e) => eprintln!("{}: ERR {e} {:?} {:?}", p.display(), e.answer(), e.offset()),
        }
    }
}
