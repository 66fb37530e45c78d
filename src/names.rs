//! Engine enums with one stable name per variant: the name used in files, run records and on
//! the command line. [`named_enum!`] declares such an enum with `FromStr` and `Display`, so
//! engine modules need no command-line library; the CLI adapts them to clap in one place.

/// An enum whose variants have stable names and one-line descriptions.
pub trait Named: Copy + Send + Sync + 'static {
    /// What the values are, for error messages ("method", "cost").
    const WHAT: &'static str;
    fn all() -> &'static [Self];
    fn name(self) -> &'static str;
    /// The variant's doc comment.
    fn help(self) -> &'static str;
}

/// The error of parsing a [`Named`] value: says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {got:?} (one of: {expected})")]
pub struct UnknownName {
    pub what: &'static str,
    pub got: String,
    pub expected: String,
}

/// Parses a [`Named`] value by its name.
pub fn parse<T: Named>(s: &str) -> Result<T, UnknownName> {
    T::all()
        .iter()
        .copied()
        .find(|v| v.name() == s)
        .ok_or_else(|| UnknownName {
            what: T::WHAT,
            got: s.to_string(),
            expected: T::all()
                .iter()
                .map(|v| v.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Declares an enum of unit variants, each with a name (`Variant = "name"`), and implements
/// [`Named`], `FromStr`, `Display`, an inherent `ALL` and `name()` for it. Doc comments on
/// the variants become their help text.
#[macro_export]
macro_rules! named_enum {
    (
        $what:literal;
        $(#[$meta:meta])*
        $vis:vis enum $ty:ident {
            $( $(#[doc = $doc:literal])* $variant:ident = $name:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $ty {
            $( $(#[doc = $doc])* $variant ),+
        }

        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl $crate::names::Named for $ty {
            const WHAT: &'static str = $what;
            fn all() -> &'static [Self] {
                Self::ALL
            }
            fn name(self) -> &'static str {
                $ty::name(self)
            }
            fn help(self) -> &'static str {
                match self {
                    $($ty::$variant => concat!($($doc),*).trim_start()),+
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::names::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::names::parse(s)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Named;

    crate::named_enum! {
        "colour";
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Colour {
            /// The colour of the sky.
            SkyBlue = "sky-blue",
            Red = "red",
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for &c in Colour::ALL {
            assert_eq!(c.to_string().parse::<Colour>(), Ok(c));
        }
        assert_eq!(Colour::SkyBlue.help(), "The colour of the sky.");
        assert_eq!(Colour::Red.help(), "");
        let e = "green".parse::<Colour>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown colour \"green\" (one of: sky-blue, red)"
        );
    }
}
