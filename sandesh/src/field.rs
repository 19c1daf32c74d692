//! Rust types that carry Sandesh values, and the `sandesh_struct!` declaration macro.
//!
//! A Rust type maps to exactly one Sandesh type through [`SandeshField`]: `bool`, `i8` (`byte`),
//! `i16`, `i32`, `i64`, `u16`, `u32`, `u64`, [`Ipv4Addr`] (`ipv4`), [`IpAddr`] (`ipaddr`), `f64`
//! (`double`), `String`, [`Xml`], [`Uuid`] (`uuid_t`), `Vec<T>` (`list<T>`),
//! `BTreeMap<K, V>` (`map<K, V>`), and every struct declared with `sandesh_struct!`.
//!
//! `sandesh_struct!` takes one line per field — identifier, `required`/`optional`, Rust name
//! (with `as "WireName"` when the element name is not a Rust identifier), Rust type and
//! annotations — and produces from it both the typed struct and its [`StructDef`]; the
//! conversions to and from [`StructValue`] are generated from the same list, so there is no
//! per-field hand-written code anywhere.

use crate::encode::{self, EncodeError};
use crate::model::{FieldType, StructDef, StructValue, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use thiserror::Error;

/// A dynamic value that does not fit the typed struct it is converted to.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    /// A value of the wrong kind.
    #[error("expected a {expected} value, found {found}")]
    Type {
        /// The expected type.
        expected: String,
        /// The value kind found.
        found: &'static str,
    },
    /// A required field without a value.
    #[error("{strct}.{field} is required but not set")]
    Missing {
        /// The struct.
        strct: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A struct value of another definition, or with the wrong number of slots.
    #[error("struct value {found} does not match definition {expected}")]
    Shape {
        /// The definition name expected.
        expected: &'static str,
        /// The definition name found.
        found: &'static str,
    },
}

/// A Rust type that carries one Sandesh type.
pub trait SandeshField: Sized {
    /// The Sandesh type.
    const TYPE: FieldType;
    /// Converts to a dynamic value.
    fn to_value(&self) -> Value;
    /// Converts from a dynamic value of [`Self::TYPE`].
    fn from_value(v: Value) -> Result<Self, ValueError>;
    /// Writes the content of a field element holding this value (typed fast path; the
    /// default goes through [`Self::to_value`] and the dynamic encoder, and every override
    /// writes exactly what that would — a property test compares the two).
    fn encode_content(&self, out: &mut String, strct: &'static str, field: &'static str) -> Result<(), EncodeError> {
        encode::encode_content(out, strct, field, &Self::TYPE, &self.to_value())
    }
    /// Writes this value as a container element: base types in `<element>`, structs as
    /// themselves.
    fn encode_element(&self, out: &mut String, strct: &'static str, field: &'static str) -> Result<(), EncodeError> {
        out.push_str("<element>");
        self.encode_content(out, strct, field)?;
        out.push_str("</element>");
        Ok(())
    }
}

/// A struct declared with `sandesh_struct!`.
pub trait SandeshStruct: SandeshField {
    /// The definition.
    const DEF: &'static StructDef;
    /// Appends the fields (not the struct element) straight from the typed value.
    fn encode_fields_into(&self, out: &mut String) -> Result<(), EncodeError>;
    /// Converts to a dynamic struct value.
    fn to_struct_value(&self) -> StructValue;
    /// Converts from a dynamic struct value of [`Self::DEF`].
    fn from_struct_value(v: StructValue) -> Result<Self, ValueError>;
}

fn type_error(expected: &FieldType, v: &Value) -> ValueError {
    ValueError::Type { expected: expected.to_string(), found: v.kind() }
}

macro_rules! scalar_field {
    ($($t:ty => $ft:ident, $variant:ident, |$x:ident, $out:ident| $write:expr);* $(;)?) => {$(
        impl SandeshField for $t {
            const TYPE: FieldType = FieldType::$ft;
            fn to_value(&self) -> Value {
                Value::$variant(self.clone())
            }
            fn from_value(v: Value) -> Result<Self, ValueError> {
                match v {
                    Value::$variant(x) => Ok(x),
                    other => Err(type_error(&Self::TYPE, &other)),
                }
            }
            fn encode_content(
                &self,
                out: &mut String,
                _strct: &'static str,
                _field: &'static str,
            ) -> Result<(), EncodeError> {
                let $x = self;
                let $out = out;
                $write;
                Ok(())
            }
        }
    )*};
}

scalar_field! {
    bool => Bool, Bool, |x, out| out.push_str(if *x { "true" } else { "false" });
    i8 => Byte, Byte, |x, out| encode::push_int(out, i64::from(*x));
    i16 => I16, I16, |x, out| encode::push_int(out, i64::from(*x));
    i32 => I32, I32, |x, out| encode::push_int(out, i64::from(*x));
    i64 => I64, I64, |x, out| encode::push_int(out, *x);
    u16 => U16, U16, |x, out| encode::push_uint(out, u64::from(*x));
    u32 => U32, U32, |x, out| encode::push_uint(out, u64::from(*x));
    u64 => U64, U64, |x, out| encode::push_uint(out, *x);
    Ipv4Addr => Ipv4, Ipv4, |x, out| encode::push_uint(out, u64::from(u32::from(*x)));
    IpAddr => IpAddr, IpAddr, |x, out| { use std::fmt::Write as _; let _ = write!(out, "{x}"); };
    f64 => Double, Double, |x, out| { use std::fmt::Write as _; let _ = write!(out, "{x}"); };
    String => String, String, |x, out| crate::escape::escape_into(out, x);
}

/// Text carried as the Sandesh `xml` type (in a CDATA section).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Xml(pub String);

impl SandeshField for Xml {
    const TYPE: FieldType = FieldType::Xml;
    fn to_value(&self) -> Value {
        Value::Xml(self.0.clone())
    }
    fn from_value(v: Value) -> Result<Self, ValueError> {
        match v {
            Value::Xml(x) => Ok(Xml(x)),
            other => Err(type_error(&Self::TYPE, &other)),
        }
    }
}

/// A UUID carried as the Sandesh `uuid_t` type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::with_capacity(36);
        encode::push_uuid(&mut s, &self.0);
        f.write_str(&s)
    }
}

impl SandeshField for Uuid {
    const TYPE: FieldType = FieldType::Uuid;
    fn to_value(&self) -> Value {
        Value::Uuid(self.0)
    }
    fn from_value(v: Value) -> Result<Self, ValueError> {
        match v {
            Value::Uuid(x) => Ok(Uuid(x)),
            other => Err(type_error(&Self::TYPE, &other)),
        }
    }
    fn encode_content(&self, out: &mut String, _strct: &'static str, _field: &'static str) -> Result<(), EncodeError> {
        encode::push_uuid(out, &self.0);
        Ok(())
    }
}

impl<T: SandeshField> SandeshField for Vec<T> {
    const TYPE: FieldType = FieldType::List(&T::TYPE);
    fn to_value(&self) -> Value {
        Value::List(self.iter().map(T::to_value).collect())
    }
    fn from_value(v: Value) -> Result<Self, ValueError> {
        match v {
            Value::List(items) => items.into_iter().map(T::from_value).collect(),
            other => Err(type_error(&Self::TYPE, &other)),
        }
    }
    fn encode_content(&self, out: &mut String, strct: &'static str, field: &'static str) -> Result<(), EncodeError> {
        if !T::TYPE.is_valid_element() {
            // Not used by any definition; keep the dynamic encoder's answer.
            return encode::encode_content(out, strct, field, &Self::TYPE, &self.to_value());
        }
        let size =
            u32::try_from(self.len()).map_err(|_| EncodeError::TooManyElements { strct, field, len: self.len() })?;
        out.push_str("<list type=\"");
        out.push_str(T::TYPE.sandesh_type().as_str());
        out.push_str("\" size=\"");
        encode::push_uint(out, u64::from(size));
        out.push_str("\">");
        for item in self {
            item.encode_element(out, strct, field)?;
        }
        out.push_str("</list>");
        Ok(())
    }
}

impl<K: SandeshField + Ord, V: SandeshField> SandeshField for BTreeMap<K, V> {
    const TYPE: FieldType = FieldType::Map(&K::TYPE, &V::TYPE);
    fn to_value(&self) -> Value {
        Value::Map(self.iter().map(|(k, v)| (k.to_value(), v.to_value())).collect())
    }
    fn from_value(v: Value) -> Result<Self, ValueError> {
        match v {
            Value::Map(entries) => {
                entries.into_iter().map(|(k, v)| Ok((K::from_value(k)?, V::from_value(v)?))).collect()
            }
            other => Err(type_error(&Self::TYPE, &other)),
        }
    }
}

/// Declares a Sandesh struct once: the typed Rust struct, its [`StructDef`] and the
/// conversions, all from one field list. See the module documentation.
#[macro_export]
macro_rules! sandesh_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident = $wire:literal {
            $(
                $(#[$fmeta:meta])*
                $id:literal : $req:ident $fname:ident $(as $fwire:literal)? : $fty:ty
                    $([ $($ak:ident = $av:literal),* $(,)? ])?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                pub $fname: $crate::sandesh_struct!(@ty $req $fty),
            )*
        }

        impl $name {
            /// The Sandesh definition of this struct.
            pub const STRUCT: $crate::model::StructDef = $crate::model::StructDef {
                name: $wire,
                fields: &[$(
                    $crate::sandesh_struct!(
                        @fdef $id, $req, $fname, [$($fwire)?], $fty, [$($($ak = $av),*)?]
                    )
                ),*],
            };
        }

        impl $crate::field::SandeshStruct for $name {
            const DEF: &'static $crate::model::StructDef = &$name::STRUCT;

            fn encode_fields_into(
                &self,
                out: &mut String,
            ) -> Result<(), $crate::encode::EncodeError> {
                $(
                    {
                        const FD: $crate::model::FieldDef = $crate::sandesh_struct!(
                            @fdef $id, $req, $fname, [$($fwire)?], $fty, [$($($ak = $av),*)?]
                        );
                        $crate::sandesh_struct!(@enc $req out, self.$fname, $wire, FD);
                    }
                )*
                Ok(())
            }

            fn to_struct_value(&self) -> $crate::model::StructValue {
                $crate::model::StructValue {
                    def: <Self as $crate::field::SandeshStruct>::DEF,
                    fields: vec![$($crate::sandesh_struct!(@to $req self.$fname)),*],
                }
            }

            #[allow(unused_variables, unused_mut)]
            fn from_struct_value(
                v: $crate::model::StructValue,
            ) -> Result<Self, $crate::field::ValueError> {
                let def = <Self as $crate::field::SandeshStruct>::DEF;
                if v.def.name != def.name || v.fields.len() != def.fields.len() {
                    return Err($crate::field::ValueError::Shape {
                        expected: def.name,
                        found: v.def.name,
                    });
                }
                let mut slots = v.fields.into_iter();
                Ok(Self {
                    $(
                        $fname: $crate::sandesh_struct!(
                            @from $req $fty, slots.next().flatten(), $wire,
                            $crate::sandesh_struct!(@name $fname $($fwire)?)
                        ),
                    )*
                })
            }
        }

        impl $crate::field::SandeshField for $name {
            const TYPE: $crate::model::FieldType =
                $crate::model::FieldType::Struct(&$name::STRUCT);
            fn to_value(&self) -> $crate::model::Value {
                $crate::model::Value::Struct(
                    <Self as $crate::field::SandeshStruct>::to_struct_value(self),
                )
            }
            fn from_value(v: $crate::model::Value) -> Result<Self, $crate::field::ValueError> {
                match v {
                    $crate::model::Value::Struct(sv) => {
                        <Self as $crate::field::SandeshStruct>::from_struct_value(sv)
                    }
                    other => Err($crate::field::ValueError::Type {
                        expected: $wire.to_owned(),
                        found: other.kind(),
                    }),
                }
            }
            fn encode_content(
                &self,
                out: &mut String,
                _strct: &'static str,
                _field: &'static str,
            ) -> Result<(), $crate::encode::EncodeError> {
                out.push('<');
                out.push_str($wire);
                out.push('>');
                <Self as $crate::field::SandeshStruct>::encode_fields_into(self, out)?;
                out.push_str("</");
                out.push_str($wire);
                out.push('>');
                Ok(())
            }
            fn encode_element(
                &self,
                out: &mut String,
                strct: &'static str,
                field: &'static str,
            ) -> Result<(), $crate::encode::EncodeError> {
                $crate::field::SandeshField::encode_content(self, out, strct, field)
            }
        }
    };
    (@fdef $id:literal, $req:ident, $fname:ident, [$($fwire:literal)?], $fty:ty,
        [$($ak:ident = $av:literal),*]) => {
        $crate::model::FieldDef {
            id: $id,
            name: $crate::sandesh_struct!(@name $fname $($fwire)?),
            ty: <$fty as $crate::field::SandeshField>::TYPE,
            optional: $crate::sandesh_struct!(@opt $req),
            annotations: &[$((stringify!($ak), $av)),*],
        }
    };
    (@enc required $out:ident, $e:expr, $strct:expr, $fd:ident) => {
        $crate::encode::field_open($out, &$fd);
        $crate::field::SandeshField::encode_content(&$e, $out, $strct, $fd.name)?;
        $crate::encode::field_close($out, &$fd);
    };
    (@enc optional $out:ident, $e:expr, $strct:expr, $fd:ident) => {
        if let Some(v) = &$e {
            $crate::encode::field_open($out, &$fd);
            $crate::field::SandeshField::encode_content(v, $out, $strct, $fd.name)?;
            $crate::encode::field_close($out, &$fd);
        }
    };
    (@ty required $t:ty) => { $t };
    (@ty optional $t:ty) => { Option<$t> };
    (@opt required) => { false };
    (@opt optional) => { true };
    (@name $fname:ident) => { stringify!($fname) };
    (@name $fname:ident $fwire:literal) => { $fwire };
    (@to required $e:expr) => {
        Some($crate::field::SandeshField::to_value(&$e))
    };
    (@to optional $e:expr) => {
        $e.as_ref().map($crate::field::SandeshField::to_value)
    };
    (@from required $fty:ty, $slot:expr, $strct:expr, $field:expr) => {
        match $slot {
            Some(v) => <$fty as $crate::field::SandeshField>::from_value(v)?,
            None => {
                return Err($crate::field::ValueError::Missing {
                    strct: $strct,
                    field: $field,
                })
            }
        }
    };
    (@from optional $fty:ty, $slot:expr, $strct:expr, $field:expr) => {
        match $slot {
            Some(v) => Some(<$fty as $crate::field::SandeshField>::from_value(v)?),
            None => None,
        }
    };
}
