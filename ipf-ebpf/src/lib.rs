#![no_std]
// Library target so ipf-agent can list this crate as a build-dependency (rebuilds on change).
