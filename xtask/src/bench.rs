use anyhow::Result;
#[derive(clap::Subcommand)]
pub enum Bench { Datapath }
pub fn run(_b: Bench) -> Result<()> { Ok(()) }
