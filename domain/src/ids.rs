//! Identifiers parsed once at the edge and trusted afterwards.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a value is not a valid identifier; the message names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("VIN must be 17 characters of A-Z (without I, O, Q) and 0-9, got {0:?}")]
    Vin(String),
    #[error("must be a UUID, got {0:?}")]
    Uuid(String),
    #[error("ecuAddress must be \"0x\" followed by 2 hex digits, got {0:?}")]
    EcuAddress(String),
    #[error("dataId must be \"0x\" followed by 4 hex digits, got {0:?}")]
    DataId(String),
    #[error("dtcCode must be \"P\" followed by 4 hex digits, got {0:?}")]
    DtcCode(String),
    #[error("routineId must be \"0x\" followed by 4 hex digits, got {0:?}")]
    RoutineId(String),
    #[error("statusMask must be \"0x\" followed by 2 hex digits, got {0:?}")]
    StatusMask(String),
    #[error("data must be \"0x\" followed by 1 to 64 bytes as pairs of hex digits, got {0:?}")]
    HexData(String),
    #[error("must be one of {allowed}, got {got:?}")]
    Choice { allowed: String, got: String },
}

/// Vehicle identification number (ISO 3779): 17 characters, no I, O or Q.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Vin(String);

impl Vin {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let ok = raw.len() == 17
            && raw.bytes().all(|b| (b.is_ascii_uppercase() && !matches!(b, b'I' | b'O' | b'Q')) || b.is_ascii_digit());
        if ok { Ok(Self(raw.to_owned())) } else { Err(IdError::Vin(raw.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Vin {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Vin> for String {
    fn from(value: Vin) -> Self {
        value.0
    }
}

impl fmt::Display for Vin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            pub fn parse(raw: &str) -> Result<Self, IdError> {
                Uuid::parse_str(raw)
                    .map(Self)
                    .map_err(|_| IdError::Uuid(raw.to_owned()))
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A diagnostic command. New ids are UUIDv7, so they sort by creation time.
    CommandId
);
uuid_id!(
    /// A person or service account.
    UserId
);
uuid_id!(
    /// A vehicle, as the API addresses it (the VIN is its natural key on the log).
    VehicleId
);

impl CommandId {
    /// A new time-ordered id (UUIDv7).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for CommandId {
    fn default() -> Self {
        Self::new()
    }
}

/// Parses `0x` followed by exactly `digits` hex digits (either case) into a number.
fn parse_prefixed_hex(raw: &str, prefix: &str, digits: usize) -> Option<u16> {
    let hex = raw.strip_prefix(prefix)?;
    if hex.len() != digits || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(hex, 16).ok()
}

/// Address of one ECU on the vehicle network, written `0x10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EcuAddress(u8);

impl EcuAddress {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        parse_prefixed_hex(raw, "0x", 2)
            .and_then(|v| u8::try_from(v).ok())
            .map(Self)
            .ok_or_else(|| IdError::EcuAddress(raw.to_owned()))
    }

    pub const fn new(value: u8) -> Self {
        Self(value)
    }

    pub fn value(&self) -> u8 {
        self.0
    }
}

impl fmt::Display for EcuAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X}", self.0)
    }
}

/// A UDS data identifier, written `0x010C`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DataId(u16);

impl DataId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        parse_prefixed_hex(raw, "0x", 4).map(Self).ok_or_else(|| IdError::DataId(raw.to_owned()))
    }

    pub const fn new(value: u16) -> Self {
        Self(value)
    }

    pub fn value(&self) -> u16 {
        self.0
    }
}

impl fmt::Display for DataId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04X}", self.0)
    }
}

/// A powertrain diagnostic trouble code, written `P0420`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DtcCode(u16);

impl DtcCode {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        parse_prefixed_hex(raw, "P", 4).map(Self).ok_or_else(|| IdError::DtcCode(raw.to_owned()))
    }

    pub const fn new(value: u16) -> Self {
        Self(value)
    }
}

impl fmt::Display for DtcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{:04X}", self.0)
    }
}

/// A UDS routine identifier, written `0xFF00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoutineId(u16);

impl RoutineId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        parse_prefixed_hex(raw, "0x", 4).map(Self).ok_or_else(|| IdError::RoutineId(raw.to_owned()))
    }

    pub const fn new(value: u16) -> Self {
        Self(value)
    }

    pub fn value(&self) -> u16 {
        self.0
    }
}

impl fmt::Display for RoutineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04X}", self.0)
    }
}

/// A DTC status mask (ISO 14229 status bits), written `0x08`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StatusMask(u8);

impl StatusMask {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        parse_prefixed_hex(raw, "0x", 2)
            .and_then(|v| u8::try_from(v).ok())
            .map(Self)
            .ok_or_else(|| IdError::StatusMask(raw.to_owned()))
    }

    pub const fn new(value: u8) -> Self {
        Self(value)
    }

    pub fn value(&self) -> u8 {
        self.0
    }
}

impl fmt::Display for StatusMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X}", self.0)
    }
}

/// Raw bytes to write, written `0x0A1B`: 1 to 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HexData(Vec<u8>);

impl HexData {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let bad = || IdError::HexData(raw.to_owned());
        let hex = raw.strip_prefix("0x").ok_or_else(bad)?;
        if hex.is_empty() || hex.len() > 128 || hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad()))
            .collect::<Result<Vec<u8>, _>>()
            .map(Self)
    }

    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for HexData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02X}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_seed_vins() {
        for vin in ["1HGBH41JXMN109186", "5YJSA1E14HF123456", "WBADT43452G123456", "WAUZZZ8V8KA123456"] {
            assert_eq!(Vin::parse(vin).map(|v| v.to_string()), Ok(vin.to_owned()));
        }
    }

    #[test]
    fn rejects_vin_with_lowercase_letters_forbidden_letters_or_wrong_length() {
        for bad in ["1hgbh41jxmn109186", "1HGBH41JXMN10918O", "1HGBH41JXMN10918", "1HGBH41JXMN1091866", ""] {
            assert!(matches!(Vin::parse(bad), Err(IdError::Vin(_))), "{bad}");
        }
    }

    #[test]
    fn ecu_address_needs_prefix_and_two_hex_digits() {
        assert_eq!(EcuAddress::parse("0x10"), Ok(EcuAddress::new(0x10)));
        assert_eq!(EcuAddress::parse("0x7e").map(|e| e.to_string()), Ok("0x7E".to_owned()));
        for bad in ["10", "0x1", "0x100", "0xZZ", "0X10", " 0x10"] {
            assert!(EcuAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn data_id_needs_prefix_and_four_hex_digits() {
        assert_eq!(DataId::parse("0x010C"), Ok(DataId::new(0x010C)));
        for bad in ["0x10C", "010C", "0x010CC", "0xG10C"] {
            assert!(DataId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dtc_code_needs_p_and_four_hex_digits() {
        assert_eq!(DtcCode::parse("P0420").map(|d| d.to_string()), Ok("P0420".to_owned()));
        for bad in ["p0420", "P042", "C0420", "P04200"] {
            assert!(DtcCode::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routine_ids_masks_and_data_parse_and_print_back() {
        assert_eq!(RoutineId::parse("0xff00").map(|r| r.to_string()), Ok("0xFF00".to_owned()));
        assert_eq!(StatusMask::parse("0x08"), Ok(StatusMask::new(8)));
        assert_eq!(HexData::parse("0x0a1B").map(|d| d.to_string()), Ok("0x0A1B".to_owned()));
        for bad in ["0x", "0xABC", "0xZZ", "0A", &format!("0x{}", "00".repeat(65))] {
            assert!(HexData::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_command_ids_are_version_7_and_increase() {
        let a = CommandId::new();
        let b = CommandId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b);
    }
}
