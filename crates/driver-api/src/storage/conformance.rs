//! The shared test suite of the storage port: every [`StoragePool`] implementation runs it (the fake in its unit tests, the `dir` pool against real `qemu-img`).
//!
//! Functions panic with a message naming the broken expectation. They use volume names
//! starting with `conformance-`, expect none to exist, and delete what they create.

use super::{
    CloneVolumeError, CreateVolume, CreateVolumeError, DeleteVolumeError, ResizeVolumeError,
    StoragePool, VolumeFormat,
};

const MIB: u64 = 1024 * 1024;

/// Runs every test of the suite in order.
pub async fn run_all<P: StoragePool>(pool: &P) {
    create_list_delete(pool).await;
    clones_keep_their_base(pool).await;
    resize_grows_only(pool).await;
    bad_requests_are_refused(pool).await;
}

/// Proves create, list and delete round-trip for both formats.
pub async fn create_list_delete<P: StoragePool>(pool: &P) {
    let qcow2 = pool
        .create(CreateVolume {
            name: "conformance-a",
            format: VolumeFormat::Qcow2,
            size_bytes: 8 * MIB,
        })
        .await
        .expect("create a qcow2 volume");
    assert_eq!(qcow2.name, "conformance-a");
    assert_eq!(qcow2.format, VolumeFormat::Qcow2);
    assert_eq!(qcow2.size_bytes, 8 * MIB);
    assert_eq!(qcow2.backing_volume, None);
    let raw = pool
        .create(CreateVolume {
            name: "conformance-b",
            format: VolumeFormat::Raw,
            size_bytes: 4 * MIB,
        })
        .await
        .expect("create a raw volume");
    assert_eq!(raw.format, VolumeFormat::Raw);
    assert_eq!(raw.size_bytes, 4 * MIB);

    let listed = conformance_volumes(pool).await;
    assert_eq!(
        listed,
        vec![qcow2.clone(), raw.clone()],
        "list shows both, sorted"
    );

    let duplicate = pool
        .create(CreateVolume {
            name: "conformance-a",
            format: VolumeFormat::Raw,
            size_bytes: MIB,
        })
        .await;
    assert!(
        matches!(duplicate, Err(CreateVolumeError::AlreadyExists { .. })),
        "creating an existing volume is refused, got {duplicate:?}"
    );

    pool.delete("conformance-a").await.expect("delete qcow2");
    pool.delete("conformance-b").await.expect("delete raw");
    assert!(
        conformance_volumes(pool).await.is_empty(),
        "deleted volumes are gone"
    );
    let missing = pool.delete("conformance-a").await;
    assert!(
        matches!(missing, Err(DeleteVolumeError::NotFound { .. })),
        "deleting a missing volume is refused, got {missing:?}"
    );
}

/// Proves a linked clone references its base, which then cannot be deleted, while a full
/// copy is independent.
pub async fn clones_keep_their_base<P: StoragePool>(pool: &P) {
    pool.create(CreateVolume {
        name: "conformance-base",
        format: VolumeFormat::Qcow2,
        size_bytes: 8 * MIB,
    })
    .await
    .expect("create base");
    let linked = pool
        .clone_linked("conformance-base", "conformance-linked")
        .await
        .expect("linked clone");
    assert_eq!(linked.format, VolumeFormat::Qcow2);
    assert_eq!(linked.size_bytes, 8 * MIB, "a clone has its base's size");
    assert_eq!(linked.backing_volume.as_deref(), Some("conformance-base"));

    let full = pool
        .copy_full("conformance-base", "conformance-full", VolumeFormat::Raw)
        .await
        .expect("full copy");
    assert_eq!(full.format, VolumeFormat::Raw);
    assert_eq!(full.size_bytes, 8 * MIB);
    assert_eq!(
        full.backing_volume, None,
        "a full copy has no backing volume"
    );

    let refused = pool.delete("conformance-base").await;
    match refused {
        Err(DeleteVolumeError::HasClones { clones, .. }) => {
            assert_eq!(clones, vec!["conformance-linked".to_string()]);
        }
        other => panic!("deleting a base with a linked clone is refused, got {other:?}"),
    }
    let missing_source = pool.clone_linked("conformance-none", "conformance-x").await;
    assert!(
        matches!(missing_source, Err(CloneVolumeError::SourceMissing { .. })),
        "cloning a missing volume is refused, got {missing_source:?}"
    );
    let existing_target = pool
        .copy_full("conformance-base", "conformance-full", VolumeFormat::Qcow2)
        .await;
    assert!(
        matches!(existing_target, Err(CloneVolumeError::AlreadyExists { .. })),
        "copying onto an existing volume is refused, got {existing_target:?}"
    );

    pool.delete("conformance-linked")
        .await
        .expect("delete clone");
    pool.delete("conformance-full").await.expect("delete copy");
    pool.delete("conformance-base")
        .await
        .expect("a base without clones can be deleted");
    assert!(conformance_volumes(pool).await.is_empty());
}

/// Proves a volume grows and refuses to shrink.
pub async fn resize_grows_only<P: StoragePool>(pool: &P) {
    for (name, format) in [
        ("conformance-grow-q", VolumeFormat::Qcow2),
        ("conformance-grow-r", VolumeFormat::Raw),
    ] {
        pool.create(CreateVolume {
            name,
            format,
            size_bytes: 4 * MIB,
        })
        .await
        .expect("create");
        let grown = pool.resize(name, 16 * MIB).await.expect("grow");
        assert_eq!(grown.size_bytes, 16 * MIB);
        let shrink = pool.resize(name, 8 * MIB).await;
        assert!(
            matches!(shrink, Err(ResizeVolumeError::Shrink { .. })),
            "shrinking is refused, got {shrink:?}"
        );
        pool.delete(name).await.expect("delete");
    }
    let missing = pool.resize("conformance-none", 16 * MIB).await;
    assert!(
        matches!(missing, Err(ResizeVolumeError::NotFound { .. })),
        "resizing a missing volume is refused, got {missing:?}"
    );
}

/// Proves malformed requests are refused and create nothing.
pub async fn bad_requests_are_refused<P: StoragePool>(pool: &P) {
    let bad_name = pool
        .create(CreateVolume {
            name: "../conformance-escape",
            format: VolumeFormat::Qcow2,
            size_bytes: MIB,
        })
        .await;
    assert!(
        matches!(bad_name, Err(CreateVolumeError::InvalidName(_))),
        "a path-like name is refused, got {bad_name:?}"
    );
    let zero = pool
        .create(CreateVolume {
            name: "conformance-zero",
            format: VolumeFormat::Raw,
            size_bytes: 0,
        })
        .await;
    assert!(
        matches!(zero, Err(CreateVolumeError::ZeroSize)),
        "a zero size is refused, got {zero:?}"
    );
    pool.create(CreateVolume {
        name: "conformance-rawbase",
        format: VolumeFormat::Raw,
        size_bytes: MIB,
    })
    .await
    .expect("create raw base");
    assert!(
        conformance_volumes(pool).await.len() == 1,
        "refused requests created nothing"
    );
    pool.delete("conformance-rawbase").await.expect("delete");
}

async fn conformance_volumes<P: StoragePool>(pool: &P) -> Vec<super::VolumeInfo> {
    pool.list()
        .await
        .expect("list volumes")
        .into_iter()
        .filter(|volume| volume.name.starts_with("conformance-"))
        .collect()
}
