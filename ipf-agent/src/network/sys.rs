//! Socket and interface helpers the senders share: thin, checked wrappers over libc.

use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::NetError;
use crate::datapath::interface_index;

/// An IPv4 or IPv6 socket address; IPv6 carries `scope_id`, which only scoped addresses use.
pub(super) enum SockAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl SockAddr {
    pub(super) fn new(addr: IpAddr, scope_id: u32) -> Self {
        match addr {
            IpAddr::V4(a) => {
                // SAFETY: all-zero is a valid sockaddr_in; the fields that matter are set below.
                let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                SockAddr::V4(sin)
            }
            IpAddr::V6(a) => {
                // SAFETY: all-zero is a valid sockaddr_in6; the fields that matter are set below.
                let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_addr.s6_addr = a.octets();
                sin6.sin6_scope_id = scope_id;
                SockAddr::V6(sin6)
            }
        }
    }

    pub(super) fn as_ptr(&self) -> *const libc::sockaddr {
        match self {
            SockAddr::V4(s) => (s as *const libc::sockaddr_in).cast(),
            SockAddr::V6(s) => (s as *const libc::sockaddr_in6).cast(),
        }
    }

    pub(super) fn len(&self) -> libc::socklen_t {
        (match self {
            SockAddr::V4(_) => size_of::<libc::sockaddr_in>(),
            SockAddr::V6(_) => size_of::<libc::sockaddr_in6>(),
        }) as libc::socklen_t
    }
}

pub(super) fn link_addr(ifindex: u32, ether_type: u16, dst: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: all-zero is a valid sockaddr_ll; the fields that matter are set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ether_type.to_be();
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&dst);
    sll
}

pub(super) fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(domain, ty, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: valid fd; the pointer and length describe `value`, alive for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn set_int(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    setsockopt(fd, level, name, &v)
}

pub(super) fn attach_filter(fd: &OwnedFd, filter: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        // The kernel copies the program and never writes through this pointer.
        filter: filter.as_ptr().cast_mut(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

pub(super) fn bind_to_device(fd: &OwnedFd, ifname: &str) -> io::Result<()> {
    // SAFETY: valid fd; the pointer and length describe the name's bytes (no NUL needed).
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            ifname.as_ptr().cast(),
            ifname.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn check_sent(n: isize, len: usize) -> io::Result<()> {
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != len {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {n} of {len} bytes"),
        ));
    }
    Ok(())
}

/// The interface's index, or the error that names it.
pub(super) fn index_of(ifname: &str) -> Result<u32, NetError> {
    interface_index(ifname).map_err(|_| NetError::NoSuchInterface(ifname.to_owned()))
}
