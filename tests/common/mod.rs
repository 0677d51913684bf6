//! Helpers shared by the integration tests, one module per concern, all re-exported here so a
//! test says `use common::*` or names what it uses. Modules depend only on `process` and
//! `netns` (and `pcap` and `overlay` on `bed`), never on each other in a cycle.

// Each test binary uses only some of the helpers.
#![allow(dead_code)]

mod af_packet;
mod bed;
mod docker;
mod images;
mod metrics;
mod netns;
mod outside;
mod overlay;
mod pcap;
mod podman;
mod process;
mod traffic;

// Each test binary uses only some of these; the lint is silenced here only, not for the
// modules' own imports.
#[allow(unused_imports)]
pub use {
    af_packet::{arp_over_raw_socket, capture_sources, mac_bytes, send_frames},
    bed::{end_keeper, host_of, Bed},
    docker::Dockerd,
    images::{busybox_tar, ContainerCli, IMAGE},
    metrics::{free_port, promtool_check, scrape, series},
    netns::{has_link, in_netns, spawn_in_netns},
    outside::{
        bed_with_outside, download, download_from, download_server, download_server_on,
        link_outside, tcp_connect, udp_ask, udp_ask_to, udp_echo_server, udp_echo_server_on,
        ECHO_PORT, OUTSIDE_IP, OUTSIDE_IP6,
    },
    overlay::{underlay_ip, Hosts},
    pcap::{finish_capture, start_capture, tshark_fields},
    podman::{podman_config, write_conflist, Podman},
    process::{cpu_ticks, eventually, rss_mib, run},
    traffic::{
        paced_stream, ping, ping_received, ping_rtt_ms, ping_series, receive_all,
        send_pseudo_random, tcp_transfer, Digest,
    },
};
