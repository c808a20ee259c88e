//! What the receive tests share: a configuration lookup and the userspace receive path end to end.
#![allow(dead_code, reason = "each test file uses part of it")]

use std::collections::{HashMap, HashSet};

use ipf_common::{
    VridConfig,
    frame::{Frame, classify, vrrp_message},
    maps::vrid_flags,
    vrrp::{Advert, RxError, VridLookup, validate_advert},
};

#[derive(Default)]
pub struct Lookup {
    pub configs: HashMap<(u8, u8), VridConfig>,
    pub peers: HashSet<(u8, u8, [u8; 16])>,
}

impl VridLookup for Lookup {
    fn config(&self, family: u8, vrid: u8) -> Option<VridConfig> {
        self.configs.get(&(family, vrid)).copied()
    }

    fn is_peer(&self, family: u8, vrid: u8, addr: &[u8; 16]) -> bool {
        self.peers.contains(&(family, vrid, *addr))
    }
}

impl Lookup {
    /// Configures `vrid` for `family` with `version`, 1 s adverts, primary address `primary`.
    pub fn with(mut self, family: u8, vrid: u8, version: u8, primary: [u8; 16]) -> Self {
        self.configs.insert(
            (family, vrid),
            VridConfig {
                flags: vrid_flags::CONFIGURED,
                version,
                priority: 100,
                adver_int_cs: 100,
                primary_addr: primary,
                ..VridConfig::default()
            },
        );
        self
    }

    pub fn edit(&mut self, family: u8, vrid: u8, f: impl FnOnce(&mut VridConfig)) {
        f(self.configs.get_mut(&(family, vrid)).expect("configured"));
    }
}

/// What the agent's raw-socket path does with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Advert),
    Rejected(RxError),
    NotVrrp,
}

pub fn receive(frame: &[u8], lookup: &Lookup) -> Outcome {
    match classify(frame) {
        Frame::Vrrp { ip, offset, .. } => match vrrp_message(frame, &ip, offset) {
            None => Outcome::Rejected(RxError::PacketLen),
            Some(msg) => match validate_advert(&ip, msg, lookup) {
                Ok(a) => Outcome::Accepted(a),
                Err(e) => Outcome::Rejected(e),
            },
        },
        Frame::Invalid(e) => Outcome::Rejected(e),
        Frame::Claim(_) | Frame::Other => Outcome::NotVrrp,
    }
}

/// RFC 1071 done the plain way, as an independent reference.
pub fn reference_checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
