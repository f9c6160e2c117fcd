//! `jupyter-room`: for the organiser of a room stack (one ECS instance per
//! participant, each signalling one shared ROS wait condition with the
//! participant's name as the signal id). It reads the stack's outputs and
//! shows who is ready, who failed and who is still waiting, or writes
//! printable login cards with QR codes (room/README.md). For a room larger
//! than one stack, it prints the commands that create the stacks.
//!
//! | module | what it holds |
//! |---|---|
//! | [`input`] | every documented shape of the input, read into one `Room` |
//! | [`show`] | the terminal table and the CSV |
//! | [`cards`] | the printable HTML page, its QR codes and HTML escaping |
//! | [`snapshot`] | one look at a room: its stacks, and per participant their front and report |
//! | [`aliyun`] | the organiser's `aliyun` CLI, run for each API call |
//! | [`cloud`] | a room's stacks found by tag and made into a `Snapshot` |
//! | [`up`] | the participants file, and the stacks `up` creates |
//! | [`collected`] | whose work `collect` brought back, for `down` |
//! | [`split`] | a larger room's names checked and split into stacks, one CreateStack command each |
//! | [`text`] | redaction, one-line and control-character defusing, terminal widths |
//! | [`fronts`] | the participants' fronts over HTTP(S): the progress JSON, token-bearing requests, the certificate policy |
//! | [`watch`] | the live view: a row per participant, the terminal table and the projector's page |
//! | [`collect`] | every participant's work downloaded, the index, resuming |
//! | [`update`] | every participant's agent asked to take the organiser's fixes |
//! | [`cli`] | the command line and its exit codes |

pub mod aliyun;
pub mod cards;
pub mod cli;
pub mod cloud;
pub mod collect;
pub mod collected;
pub mod fronts;
pub mod input;
pub mod show;
pub mod snapshot;
pub mod split;
pub mod text;
pub mod up;
pub mod update;
pub mod watch;
