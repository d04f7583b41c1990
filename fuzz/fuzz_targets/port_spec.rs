//! Port-forward specifications from the command line (passt's `-t`/`-u`
//! syntax): any text either fails to parse or parses to a value whose
//! formatted (canonical) form parses back to an equal value and formats the
//! same way again. Both one spec and a whole whitespace-separated table are
//! checked.
#![no_main]

use std::fmt::{Debug, Display};
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use nat_core::{PortForwards, PortSpec};

fuzz_target!(|text: &str| {
    round_trip::<PortSpec>(text);
    round_trip::<PortForwards>(text);
});

fn round_trip<T>(text: &str)
where
    T: FromStr + Display + Debug + PartialEq,
    T::Err: Debug,
{
    let Ok(parsed) = text.parse::<T>() else {
        return;
    };
    let formatted = parsed.to_string();
    let reparsed = match formatted.parse::<T>() {
        Ok(reparsed) => reparsed,
        Err(error) => {
            panic!("{text:?} parsed to {parsed:?}, but its form {formatted:?} fails: {error:?}")
        }
    };
    assert_eq!(reparsed, parsed, "{text:?} formatted as {formatted:?}");
    assert_eq!(
        reparsed.to_string(),
        formatted,
        "formatting {text:?} is not stable"
    );
}
