//! The keyword tables: what is accepted and ignored (with a warning), and what is refused with the
//! reason.

/// global_defs keywords accepted and ignored: they configure mail, SNMP, D-Bus, process scheduling or
/// keepalived's own checks, none of which changes how ipf elects or what it puts on the wire.
pub(super) const GLOBAL_IGNORED: &[&str] = &[
    "max_auto_priority",
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "lvs_id",
    "vrrp_skip_check_adv_addr",
    "vrrp_check_unicast_src",
    "vrrp_garp_master_refresh_repeat",
    "vrrp_garp_lower_prio_delay",
    "vrrp_garp_lower_prio_repeat",
    "vrrp_garp_interval",
    "vrrp_gna_interval",
    "vrrp_lower_prio_no_advert",
    "vrrp_higher_prio_send_advert",
    "vrrp_priority",
    "vrrp_no_swap",
    "vrrp_rt_priority",
    "vrrp_cpu_affinity",
    "vrrp_rlimit_rttime",
    "vrrp_rlimit_rtime",
    "vrrp_process_name",
    "process_names",
    "dynamic_interfaces",
    "enable_snmp_vrrp",
    "enable_snmp_keepalived",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_traps",
    "enable_dbus",
    "vrrp_startup_delay",
    "log_unknown_vrids",
    "vrrp_netlink_cmd_rcv_bufs",
    "vrrp_netlink_cmd_rcv_bufs_force",
    "vrrp_netlink_monitor_rcv_bufs",
    "vrrp_netlink_monitor_rcv_bufs_force",
    "vrrp_rx_bufs_policy",
    "vrrp_rx_bufs_multiplier",
    "vrrp_iptables",
    "vrrp_ipsets",
    "nftables",
];

/// keepalived features ipf does not have, with what to do instead.
pub(super) const GLOBAL_UNSUPPORTED: &[(&str, &str)] = &[
    ("vrrp_strict", "strict RFC mode is not supported"),
    (
        "vrrp_mcast_group4",
        "ipf sends adverts to 224.0.0.18 (or to unicast peers)",
    ),
    (
        "vrrp_mcast_group6",
        "ipf sends adverts to ff02::12 (or to unicast peers)",
    ),
    ("notify_fifo", "notify FIFOs are not supported: use notify scripts"),
    (
        "notify_fifo_script",
        "notify FIFOs are not supported: use notify scripts",
    ),
    ("vrrp_notify_fifo", "notify FIFOs are not supported: use notify scripts"),
    (
        "vrrp_notify_fifo_script",
        "notify FIFOs are not supported: use notify scripts",
    ),
    ("startup_script", "startup scripts are not supported"),
    ("shutdown_script", "shutdown scripts are not supported"),
    (
        "vrrp_garp_extra_if",
        "gratuitous ARP on extra interfaces is not supported",
    ),
];

/// vrrp_instance keywords accepted and ignored: mail, logging, receive-side tolerances and GARP
/// fine-tuning that keep the election and the addresses as they are.
pub(super) const INSTANCE_IGNORED: &[&str] = &[
    "smtp_alert",
    "debug",
    "accept",
    "skip_check_adv_addr",
    "check_unicast_src",
    "unicast_ttl",
    "unicast_fault_no_peer",
    "promote_secondaries",
    "garp_master_refresh_repeat",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "lower_prio_no_advert",
    "higher_prio_send_advert",
    "notify_priority_changes",
    "kernel_rx_buf_size",
    "linkbeat_use_polling",
    "lvs_sync_daemon_interface",
    "timer_expired_backup",
    "track_src_ip",
];

pub(super) const INSTANCE_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "dont_track_primary",
        "ipf always puts the instance in FAULT when its interface goes down",
    ),
    ("use_vmac", "virtual MAC interfaces are not supported"),
    ("use_vmac_addr", "virtual MAC interfaces are not supported"),
    ("vmac_xmit_base", "virtual MAC interfaces are not supported"),
    ("use_ipvlan", "ipvlan interfaces are not supported"),
    ("no_accept", "ipf always accepts traffic to the VIPs it holds"),
    ("strict_mode", "strict RFC mode is not supported"),
    (
        "mcast_dst_ip",
        "ipf sends adverts to the standard group (or to unicast peers)",
    ),
    ("track_file", "only track_script and track_interface are supported"),
    ("track_process", "only track_script and track_interface are supported"),
    ("track_bfd", "only track_script and track_interface are supported"),
    ("virtual_routes", "virtual routes are not supported"),
    ("virtual_rules", "virtual rules are not supported"),
    ("no_virtual_ipaddress", "an instance needs its addresses"),
    ("native_ipv6", "the family comes from the addresses"),
    ("down_timer_adverts", "ipf uses RFC 5798's three adverts"),
    ("old_unicast_checksum", "ipf computes the RFC checksum"),
    ("v3_checksum_as_v2", "ipf computes the RFC checksum"),
    ("vrf", "VRFs are not supported"),
    (
        "notify_deleted",
        "only notify, notify_master, notify_backup, notify_fault and notify_stop are supported",
    ),
    (
        "notify_master_rx_lower_pri",
        "only notify, notify_master, notify_backup, notify_fault and notify_stop are supported",
    ),
    ("auth_hmac", "only auth_type PASS is supported"),
    ("owner_ignore_adverts", "not supported"),
    ("garp_extra_if", "gratuitous ARP on extra interfaces is not supported"),
];

pub(super) const TOP_UNSUPPORTED: &[(&str, &str)] = &[
    ("vrrp_sync_group", "sync groups are not supported"),
    ("virtual_server", "ipf does VRRP only, not LVS"),
    ("virtual_server_group", "ipf does VRRP only, not LVS"),
    ("static_ipaddress", "static addresses are not supported"),
    ("static_routes", "static routes are not supported"),
    ("static_rules", "static rules are not supported"),
    ("vrrp_track_file", "only vrrp_script checks are supported"),
    ("track_file", "only vrrp_script checks are supported"),
    ("vrrp_track_process", "only vrrp_script checks are supported"),
    ("garp_group", "gratuitous ARP groups are not supported"),
    ("linkbeat_interfaces", "not supported"),
    ("bfd_instance", "BFD is not supported"),
    ("net_namespace", "run ipf inside the namespace instead"),
];

/// keepalived's limit on interface names (IFNAMSIZ - 1).
pub(super) const MAX_IFNAME: usize = 15;
