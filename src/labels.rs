//! Closed sets of metric label values: one macro gives each enum its `ALL`,
//! `as_str`, `from_label` and `Display`, so a label value is spelled once.

/// Declares an enum whose variants stand for fixed label values. A variant's
/// label is its name in snake_case (`ConnectTimeout` is `connect_timeout`,
/// `FinWait1` is `fin_wait1`) unless given as `Variant = "label"`:
///
/// ```text
/// label_enum! {
///     /// Why a connection attempt failed.
///     pub enum FailureReason {
///         Dns,
///         ConnectTimeout,
///     }
/// }
/// ```
///
/// `ALL` lists the variants in declaration order (some callers rely on it,
/// e.g. kernel state numbers), so label sets can be initialised and removed
/// as a whole.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident $(= $label:literal)? ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$($name::$variant),+].len()] = [$($name::$variant),+];

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $crate::labels::label_enum!(@label $variant $($label)?) ),+
                }
            }

            /// The value whose label is `label`, if any.
            #[allow(dead_code)]
            pub fn from_label(label: &str) -> Option<$name> {
                $name::ALL.into_iter().find(|v| v.as_str() == label)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
    (@label $variant:ident $label:literal) => {
        $label
    };
    (@label $variant:ident) => {{
        const NAME: &str = stringify!($variant);
        const BYTES: [u8; $crate::labels::snake_len(NAME)] = $crate::labels::snake_case(NAME);
        const LABEL: &str = match std::str::from_utf8(&BYTES) {
            Ok(label) => label,
            Err(_) => panic!("identifiers are ASCII"),
        };
        LABEL
    }};
}

pub(crate) use label_enum;

/// The length of `name` (CamelCase ASCII) in snake_case.
pub const fn snake_len(name: &str) -> usize {
    let bytes = name.as_bytes();
    let mut len = bytes.len();
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i].is_ascii_uppercase() {
            len += 1;
        }
        i += 1;
    }
    len
}

/// `name` (CamelCase ASCII) in snake_case; `N` is `snake_len(name)`.
pub const fn snake_case<const N: usize>(name: &str) -> [u8; N] {
    let bytes = name.as_bytes();
    let mut out = [0u8; N];
    let (mut i, mut j) = (0, 0);
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_uppercase() {
            if i > 0 {
                out[j] = b'_';
                j += 1;
            }
            out[j] = c.to_ascii_lowercase();
        } else {
            out[j] = c;
        }
        i += 1;
        j += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    label_enum! {
        enum Colour {
            Red,
            /// Documented variants keep their docs.
            DarkBlue,
            Grey50,
            Custom = "off-white",
        }
    }

    #[test]
    fn values_round_trip_in_declaration_order() {
        assert_eq!(
            Colour::ALL,
            [Colour::Red, Colour::DarkBlue, Colour::Grey50, Colour::Custom]
        );
        let labels: Vec<_> = Colour::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels, ["red", "dark_blue", "grey50", "off-white"]);
        assert_eq!(Colour::Red.to_string(), "red");
        assert_eq!(Colour::from_label("dark_blue"), Some(Colour::DarkBlue));
        assert_eq!(Colour::from_label("DarkBlue"), None);
    }
}
