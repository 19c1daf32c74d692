//! Described figures: a counter or gauge declared once, with its JSON key and what it
//! counts, so that every reader (the tools' JSON and text, the Prometheus exporter) takes
//! name, help and type from the declaration ([`crate::export::ExportCounters::FIELDS`],
//! [`crate::agent::AgentCounters::FIELDS`]; the stats region's blocks have
//! [`crate::stats::CounterField`]).

/// Whether a figure only grows or goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Monotonic (it restarts at zero only with its process, or continues across a restart).
    Counter,
    /// A level: how many now, a duration, a threshold.
    Gauge,
}

/// One declared figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Field name and JSON key (`_ms` at the end: milliseconds).
    pub key: &'static str,
    /// Counter or gauge.
    pub kind: FieldKind,
    /// What it is, one sentence without the final period.
    pub help: &'static str,
}

/// Declares a struct of `u64` figures with its [`Field`] list and its values in the same
/// order: `name: Counter "help";` or `name: Gauge "help";` per line, doc comments allowed.
/// The struct derives serde (every figure `#[serde(default)]`, so an older file or reply
/// without a newer figure still reads) plus `Debug`, `Clone`, `Default`, `PartialEq`, `Eq`;
/// `extra { ... }` fields (declared with their type and attributes) follow the figures.
#[macro_export]
#[doc(hidden)]
macro_rules! described_figures {
    (
        $(#[$smeta:meta])*
        pub struct $Name:ident {
            $( $(#[$doc:meta])* $field:ident: $kind:ident $help:literal; )*
        }
        extra { $( $(#[$xmeta:meta])* pub $xfield:ident: $xty:ty, )* }
    ) => {
        $(#[$smeta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub struct $Name {
            $(
                $(#[$doc])*
                #[doc = concat!("\n\n", $help, ".")]
                #[serde(default)]
                pub $field: u64,
            )*
            $( $(#[$xmeta])* pub $xfield: $xty, )*
        }

        impl $Name {
            /// The figures, in declaration order.
            pub const FIELDS: &'static [$crate::fields::Field] = &[$(
                $crate::fields::Field { key: stringify!($field), kind: $crate::fields::FieldKind::$kind, help: $help },
            )*];

            /// Each figure of [`Self::FIELDS`] with its value, in the same order.
            pub fn values(&self) -> Vec<(&'static $crate::fields::Field, u64)> {
                Self::FIELDS.iter().zip([$(self.$field,)*]).collect()
            }
        }
    };
}
