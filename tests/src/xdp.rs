//! The XDP program loaded for BPF_PROG_TEST_RUN: crafted frames in, verdicts and map effects out.

use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
    programs::{TestRun as _, Xdp},
};
use ipf_agent::datapath::{Tables as _, VridSpec, xdp::XdpTables};
use ipf_common::{Counter, DatapathEvent, IfaceConfig, VipKey, VridState, maps::vrid_slot};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// A VRID as the tests configure it: priority 100, 1 s adverts, our primary address 192.0.2.2 or
/// fe80::2 (adverts from it are our own), no peers, no authentication.
pub fn vrid_spec(vrid: u8, version: u8, family: ipf_agent::datapath::Family) -> VridSpec {
    use ipf_agent::datapath::Family;
    VridSpec {
        family,
        vrid,
        version,
        priority: 100,
        adver_int: std::time::Duration::from_secs(1),
        primary_addr: Some(if family == Family::V6 {
            std::net::IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 2])
        } else {
            std::net::IpAddr::from([192, 0, 2, 2])
        }),
        unicast_peers: Vec::new(),
        auth_pass: None,
        expected_addrs: None,
        master: false,
        guard: false,
    }
}

/// A loaded (not attached) instance of the program with its own maps.
pub struct TestProgram {
    ebpf: Ebpf,
    pub tables: XdpTables,
    events: RingBuf<MapData>,
}

impl TestProgram {
    pub fn load() -> Self {
        crate::require_root();
        let mut ebpf = ipf_agent::datapath::xdp::load(log::LevelFilter::Warn).unwrap();
        let tables = XdpTables::take(&mut ebpf).unwrap();
        let events = RingBuf::try_from(ebpf.take_map("EVENTS").unwrap()).unwrap();
        ipf_agent::datapath::xdp::load_program(&mut ebpf).unwrap();
        let mut p = TestProgram { ebpf, tables, events };
        p.tables
            .set_iface(IfaceConfig {
                conflict_interval_ns: 1_000_000_000,
                own_macs: [crate::frames::OWN_MAC, [0; 6], [0; 6], [0; 6]],
                own_mac_count: 1,
                _pad: [0; 7],
            })
            .unwrap();
        p
    }

    fn prog(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(ipf_agent::datapath::xdp::PROGRAM_NAME)
            .unwrap()
            .try_into()
            .unwrap()
    }

    pub fn configure(&mut self, spec: &VridSpec) {
        spec.validate().unwrap();
        let slot = vrid_slot(spec.family.wire(), spec.vrid);
        self.tables.set_config(slot, spec.config()).unwrap();
        for p in &spec.unicast_peers {
            self.tables
                .insert_peer(ipf_common::maps::PeerKey {
                    family: spec.family.wire(),
                    vrid: spec.vrid,
                    _pad: [0; 2],
                    addr: ipf_agent::datapath::wire_addr(p),
                })
                .unwrap();
        }
    }

    /// Registers `addr` as a VIP of `vrid`'s instance.
    pub fn add_vip(&mut self, addr: &str, vrid: u8) {
        let a: std::net::IpAddr = addr.parse().unwrap();
        let key = VipKey {
            family: ipf_agent::datapath::Family::of(&a).wire(),
            _pad: [0; 3],
            addr: ipf_agent::datapath::wire_addr(&a),
        };
        self.tables.insert_vip(key, vrid).unwrap();
    }

    /// Runs the program once on `frame`; returns the XDP action.
    pub fn run(&mut self, frame: &[u8]) -> u32 {
        self.run_repeat(frame, 1).0
    }

    /// Runs the program `repeat` times; returns the action and the kernel's mean ns per run.
    pub fn run_repeat(&mut self, frame: &[u8], repeat: u32) -> (u32, u32) {
        let mut out = vec![0u8; frame.len().max(64)];
        let r = self
            .prog()
            .test_run(aya::programs::TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..Default::default()
            })
            .unwrap();
        (r.return_value, r.duration.as_nanos() as u32)
    }

    pub fn counter(&self, c: Counter) -> u64 {
        self.tables.counters().unwrap()[c as usize]
    }

    pub fn counters(&self) -> Vec<u64> {
        self.tables.counters().unwrap()
    }

    pub fn state(&self, family: u8, vrid: u8) -> VridState {
        self.tables.state(vrid_slot(family, vrid)).unwrap()
    }

    /// Events waiting in the ring buffer.
    pub fn drain_events(&mut self) -> Vec<DatapathEvent> {
        let mut out = Vec::new();
        while let Some(item) = self.events.next() {
            out.extend(ipf_agent::datapath::xdp::parse_event(&item));
        }
        out
    }
}
