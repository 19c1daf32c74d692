//! The one-declaration macros for tables of codes.
//!
//! A table of codes (drop reasons, flow actions, flow drop reasons, nexthop kinds, trace step
//! kinds, flag bits) is declared exactly once, one line per code; the macro generates
//! everything else from that line, as compile-time constants (nothing is built at run time,
//! nothing is looked up per packet):
//!
//! - [`code_enum!`](crate::code_enum): a `#[repr]` enum whose discriminants are the stored
//!   values, with `ALL` (declaration order), `code`, `from_code`, `name` (the display name,
//!   tf-vrouter's spelling where a tool prints one), `key` (the stable snake_case JSON key)
//!   and, per line, an optional constant of the stored type (`FLOW_DR_POLICY`, ...);
//! - [`flag_set!`](crate::flag_set): bit constants plus one list of [`Flag`] records (bit,
//!   symbol, display name, JSON key) in print order, and the functions that decode a word
//!   into them.
//!
//! Adding a code is adding one line to its table; never renumber a stored value.

/// Declares a table of codes once (see the [module](crate::codes) documentation).
///
/// ```
/// vrouter_abi::code_enum! {
///     /// Colours.
///     pub enum Colour: u8 {
///         /// Red.
///         Red = 1 => "red", "Red", const COLOUR_RED;
///         /// Dark blue (the display name defaults to the key when omitted).
///         DarkBlue = 4 => "dark_blue";
///     }
/// }
/// assert_eq!(Colour::from_code(4), Some(Colour::DarkBlue));
/// assert_eq!((COLOUR_RED, Colour::Red.name(), Colour::DarkBlue.name()), (1, "Red", "dark_blue"));
/// assert_eq!(Colour::ALL, &[Colour::Red, Colour::DarkBlue]);
/// ```
///
/// A line is `Variant [= value] => "key" [, "name"] [, const CONST_NAME];`: without a value
/// the discriminants count up from the previous one (from 0), as in any Rust enum.
#[macro_export]
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Enum:ident: $repr:ident {
            $(
                $(#[$doc:meta])*
                $variant:ident $(= $value:literal)? => $key:literal $(, $name:literal)? $(, const $konst:ident)?;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr($repr)]
        $vis enum $Enum {
            $(
                $(#[$doc])*
                #[doc = concat!("\n\nShown as `", $crate::code_enum!(@or $($name)? ; $key), "`, key `", $key, "`.")]
                $variant $(= $value)?,
            )*
        }

        $($(
            #[doc = concat!("The stored code of [`", stringify!($Enum), "::", stringify!($variant), "`].")]
            $vis const $konst: $repr = $Enum::$variant as $repr;
        )?)*

        impl $Enum {
            /// Every code, in declaration (and print) order.
            pub const ALL: &'static [$Enum] = &[$($Enum::$variant,)*];

            /// The stored value.
            #[inline]
            pub const fn code(self) -> $repr {
                self as $repr
            }

            /// Decodes a stored value (`None` for values this build does not know).
            #[inline]
            pub const fn from_code(v: $repr) -> Option<$Enum> {
                $( if v == $Enum::$variant as $repr { return Some($Enum::$variant); } )*
                None
            }

            /// The display name (tf-vrouter's spelling where its tools print one).
            pub const fn name(self) -> &'static str {
                match self { $($Enum::$variant => $crate::code_enum!(@or $($name)? ; $key),)* }
            }

            /// The stable snake_case key used in JSON output and exported records.
            pub const fn key(self) -> &'static str {
                match self { $($Enum::$variant => $key,)* }
            }
        }
    };
    (@or $name:literal ; $key:literal) => { $name };
    (@or ; $key:literal) => { $key };
}

/// One bit of a [`flag_set!`](crate::flag_set) table: its value and how tools show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag<T: 'static> {
    /// The bit (a single set bit of the stored word).
    pub bit: T,
    /// Short symbol (`vif --list`'s `Flags:` letters); the name where the table has none.
    pub symbol: &'static str,
    /// Display name (legends, `flow --get`).
    pub name: &'static str,
    /// Stable snake_case key for JSON.
    pub key: &'static str,
}

/// Declares a set of flag bits once: a constant per bit and the list of [`Flag`] records in
/// print order.
///
/// ```
/// vrouter_abi::flag_set! {
///     /// The door's flags, in print order.
///     pub FLAGS: u16 {
///         /// Open.
///         OPEN = 0x1 => "open", "Open", "O";
///         /// Locked.
///         LOCKED = 0x4 => "locked", "Locked";
///     }
/// }
/// assert_eq!(OPEN | LOCKED, 5);
/// assert_eq!(FLAGS[1].symbol, "Locked");
/// ```
///
/// A line is `CONST = value => "key", "name" [, "symbol"];`.
#[macro_export]
macro_rules! flag_set {
    (
        $(#[$meta:meta])*
        $vis:vis $LIST:ident: $ty:ty {
            $(
                $(#[$doc:meta])*
                $konst:ident = $value:literal => $key:literal, $name:literal $(, $symbol:literal)?;
            )*
        }
    ) => {
        $(
            $(#[$doc])*
            #[doc = concat!("\n\n`", $name, "`, key `", $key, "`.")]
            $vis const $konst: $ty = $value;
        )*

        $(#[$meta])*
        $vis const $LIST: &[$crate::codes::Flag<$ty>] = &[
            $( $crate::codes::Flag {
                bit: $konst,
                symbol: $crate::code_enum!(@or $($symbol)? ; $name),
                name: $name,
                key: $key,
            }, )*
        ];
    };
}

/// The flags of `list` set in `word`, in list order.
pub fn flags_set<T>(list: &'static [Flag<T>], word: T) -> impl Iterator<Item = &'static Flag<T>>
where
    T: Copy + std::ops::BitAnd<Output = T> + PartialEq + Default,
{
    list.iter().filter(move |f| word & f.bit != T::default())
}

/// The bits of `word` that no flag of `list` names.
pub fn unknown_bits<T>(list: &'static [Flag<T>], word: T) -> T
where
    T: Copy + std::ops::BitAnd<Output = T> + std::ops::BitOr<Output = T> + std::ops::Not<Output = T> + Default,
{
    word & !list.iter().fold(T::default(), |a, f| a | f.bit)
}

#[cfg(test)]
mod tests {
    crate::code_enum! {
        /// Test table.
        enum Implicit: u16 {
            /// Zero.
            A => "a";
            /// One.
            B => "b", "Bee";
            /// Jumps.
            C = 7 => "c", const C_CODE;
            /// Follows.
            D => "d";
        }
    }

    crate::flag_set! {
        /// Test flags.
        FLAGS: u32 {
            /// One.
            ONE = 0x1 => "one", "One", "1";
            /// Four.
            FOUR = 0x4 => "four", "Four";
        }
    }

    #[test]
    fn code_enum_generates_everything() {
        assert_eq!(Implicit::ALL.iter().map(|c| c.code()).collect::<Vec<_>>(), [0, 1, 7, 8]);
        assert_eq!(C_CODE, 7);
        for &c in Implicit::ALL {
            assert_eq!(Implicit::from_code(c.code()), Some(c));
        }
        assert_eq!(Implicit::from_code(2), None);
        assert_eq!((Implicit::A.name(), Implicit::B.name(), Implicit::B.key()), ("a", "Bee", "b"));
    }

    #[test]
    fn flag_set_generates_consts_and_list() {
        assert_eq!((ONE, FOUR), (1, 4));
        assert_eq!(FLAGS.iter().map(|f| f.symbol).collect::<Vec<_>>(), ["1", "Four"]);
        let set: Vec<_> = super::flags_set(FLAGS, 0x15).map(|f| f.key).collect();
        assert_eq!(set, ["one", "four"]);
        assert_eq!(super::unknown_bits(FLAGS, 0x15u32), 0x10);
    }
}
