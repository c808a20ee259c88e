//! Network side effects of VRRP state changes: virtual addresses (rtnetlink, `addresses`),
//! advertisements (raw IP sockets, protocol 112, `advert_tx`) and address announcements (gratuitous
//! ARP, unsolicited neighbour advertisements, hand-built Ethernet frames on an AF_PACKET socket,
//! `announce`); `sys` holds the socket and interface helpers they share.
//!
//! Sockets and the netlink connection belong to the network namespace of the thread that creates them,
//! so everything here works on the namespace it was created in, whichever thread uses it later.

mod addresses;
mod advert_tx;
mod announce;
mod sys;

use std::{io, net::IpAddr};

pub use addresses::AddressManager;
pub use advert_tx::AdvertSender;
pub use announce::{
    ARP_FRAME_LEN, Announcer, NA_FRAME_LEN, arp_probe_frame, gratuitous_arp_frame, unsolicited_na_frame,
};

pub use crate::config::{Vip, VipError};
use crate::datapath::Family;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("interface {0:?} not found")]
    NoSuchInterface(String),
    #[error("the address manager needs a tokio runtime")]
    NoRuntime,
    #[error("opening a netlink connection: {0}")]
    Connect(#[source] io::Error),
    #[error("{op} {target} on interface #{ifindex}: {source}")]
    Netlink {
        op: &'static str,
        ifindex: u32,
        /// The address (with prefix and options) or what was listed.
        target: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error(
        "adding {vip} on interface #{ifindex}: {addr}/{existing_prefix} is already there with another prefix length"
    )]
    Conflict {
        ifindex: u32,
        vip: String,
        addr: IpAddr,
        existing_prefix: u8,
    },
    #[error(transparent)]
    InvalidVip(#[from] VipError),
    #[error("{op} on {iface}{}: {source}", for_addr(.addr))]
    Socket {
        op: &'static str,
        iface: String,
        addr: Option<IpAddr>,
        #[source]
        source: io::Error,
    },
    #[error("{op} on {iface}: {addr} is not {family:?}")]
    WrongFamily {
        op: &'static str,
        iface: String,
        addr: IpAddr,
        family: Family,
    },
}

fn for_addr(addr: &Option<IpAddr>) -> String {
    addr.map(|a| format!(" ({a})")).unwrap_or_default()
}
