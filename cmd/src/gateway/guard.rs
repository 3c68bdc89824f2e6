//! The guard on operations that change a vehicle.

use serde_json::Value;
use sovd_domain::Operation;
use sovd_domain::risk::Risk;
use sovd_domain::users::Permission;

use super::error::ApiError;
use super::extract::{Caller, JsonObject};

/// An operation that changes a vehicle runs only for a caller who holds `vehicle-changes`
/// (admins do; an admin grants it), and only when the request says `"confirm": true`
/// (docs/adr/010-roles-and-vehicle-changes.md).
pub fn vehicle_change(caller: &Caller, operation: &Operation, body: &JsonObject) -> Result<(), ApiError> {
    let confirmed = match body.0.get("confirm") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid_field("confirm", "must be true or false")),
    };
    if operation.risk() != Risk::Change {
        return Ok(());
    }
    let name = operation.name();
    if !caller.holds(Permission::VehicleChanges) {
        return Err(ApiError::forbidden(format!(
            "{name} as asked changes the vehicle; it needs the vehicle-changes permission, which an admin grants"
        )));
    }
    if !confirmed {
        return Err(ApiError::invalid_field(
            "confirm",
            format!("{name} as asked changes the vehicle: send \"confirm\": true to run it"),
        ));
    }
    Ok(())
}
