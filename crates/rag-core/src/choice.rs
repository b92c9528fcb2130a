//! The `choice!` macro: enums for settings and flags, spelled one way only.

/// Defines a choice: an enum whose serde names are its only spellings, with `ALL`, `as_str`,
/// `Display` and a `FromStr` whose error names the type, the value and every accepted spelling.
/// The crate using it needs `serde` as a dependency.
#[macro_export]
macro_rules! choice {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every accepted spelling.
            pub const ALL: &'static [&'static str] = &[$($text),+];

            /// The spelling used in configuration files.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::RagError;
            fn from_str(s: &str) -> $crate::Result<Self> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err($crate::RagError::invalid_input(
                        stringify!($name),
                        format!("`{other}` is not one of {}", Self::ALL.join(", ")),
                    )),
                }
            }
        }
    };
}
