//! Device listing and the helpdesk's key-ID lookup: metadata only.

use crate::domain::caller::Caller;
use crate::domain::error::ApiError;
use crate::domain::ids::{KeyIdPrefix, UserId};
use crate::domain::model::{Device, Helpdesk};
use crate::domain::policy::{self, Permitted, grant};
use crate::domain::ports::{Clock, KeyLocation, Store};

pub struct DeviceListing {
    pub devices: Vec<Device>,
    pub helpdesk: Option<Helpdesk>,
}

/// `owner` defaults to the caller. Reads the store; the clock drops keys
/// past their retention.
pub async fn list(
    store: &dyn Store,
    clock: &dyn Clock,
    caller: &Caller,
    owner: Option<UserId>,
) -> Result<DeviceListing, ApiError> {
    let owner = owner.unwrap_or_else(|| caller.user.clone());
    policy::may_list_devices(caller, &owner)?;
    let (mut devices, tenant) = store.list_devices(&caller.tenant, &owner).await?;
    // Defence in depth: the store is asked for one tenant and one owner.
    devices.retain(|d| d.tenant == caller.tenant && d.owner == owner);
    // Superseded keys past their retention are gone, whether or not the
    // store has deleted them yet.
    let now = clock.now();
    for d in &mut devices {
        d.keys.retain(|k| k.is_live(now));
    }
    devices.sort_by(|a, b| {
        a.display_name
            .cmp(&b.display_name)
            .then_with(|| a.device_id.cmp(&b.device_id))
    });
    for d in &mut devices {
        d.keys.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(a.key_id.cmp(&b.key_id))
        });
    }
    Ok(DeviceListing {
        devices,
        helpdesk: tenant.helpdesk,
    })
}

pub async fn find_keys(
    store: &dyn Store,
    who: Permitted<'_, grant::LookUpKeys>,
    prefix: &KeyIdPrefix,
) -> Result<Vec<KeyLocation>, ApiError> {
    let caller = who.caller();
    let mut keys = store.find_keys(&caller.tenant, prefix).await?;
    keys.retain(|k| prefix.matches(&k.key_id));
    keys.sort_by(|a, b| {
        a.key_id
            .cmp(&b.key_id)
            .then_with(|| a.device_id.cmp(&b.device_id))
    });
    Ok(keys)
}
