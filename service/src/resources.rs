//! The `reservation.ResourceService` RPCs: registered resources, their
//! capacity and rules. Like the reservation RPCs, each turns the wire
//! request into a domain value, asks the store, and turns the answer back.

use std::sync::Arc;

use abi::{
    ResourceId, ResourceListing, ResourcePatch, ResourceSpec,
    pb::{self, resource_service_server::ResourceService},
    resource_page_token,
};
use reservation::{Access, Rsvp};
use tonic::{Request, Response, Status};

use crate::{
    auth::caller,
    errors::status,
    limits::{Class, Limits},
};

/// The resource service over a store.
#[derive(Clone)]
pub struct Resources {
    access: Access,
    limits: Arc<Limits>,
}

impl Resources {
    /// Serves `store`'s resources, each caller within its `limits`.
    pub fn new(store: Arc<dyn Rsvp>, limits: Arc<Limits>) -> Self {
        Resources {
            access: Access::new(store),
            limits,
        }
    }
}

fn id(raw: String) -> Result<ResourceId, Status> {
    ResourceId::parse(raw).map_err(|e| status(abi::Error::invalid("id", e.0)))
}

#[tonic::async_trait]
impl ResourceService for Resources {
    async fn create_resource(
        &self,
        request: Request<pb::CreateResourceRequest>,
    ) -> Result<Response<pb::CreateResourceResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Write)?;
        let resource = request
            .into_inner()
            .resource
            .ok_or_else(|| status(abi::Error::invalid("resource", "required")))?;
        let spec = ResourceSpec::try_from(resource).map_err(status)?;
        let made = self
            .access
            .create_resource(&caller, spec)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateResourceResponse {
            resource: Some(made.into()),
        }))
    }

    async fn get_resource(
        &self,
        request: Request<pb::GetResourceRequest>,
    ) -> Result<Response<pb::GetResourceResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Read)?;
        let id = id(request.into_inner().id)?;
        let found = self
            .access
            .get_resource(&caller, id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetResourceResponse {
            resource: Some(found.into()),
        }))
    }

    async fn update_resource(
        &self,
        request: Request<pb::UpdateResourceRequest>,
    ) -> Result<Response<pb::UpdateResourceResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Write)?;
        let patch = ResourcePatch::from_request(request.into_inner()).map_err(status)?;
        let updated = self
            .access
            .update_resource(&caller, patch)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateResourceResponse {
            resource: Some(updated.into()),
        }))
    }

    async fn delete_resource(
        &self,
        request: Request<pb::DeleteResourceRequest>,
    ) -> Result<Response<pb::DeleteResourceResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Write)?;
        let request = request.into_inner();
        let id = id(request.id)?;
        let deleted = self
            .access
            .delete_resource(&caller, id, request.force)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteResourceResponse {
            resource: Some(deleted.into()),
        }))
    }

    async fn list_resources(
        &self,
        request: Request<pb::ListResourcesRequest>,
    ) -> Result<Response<pb::ListResourcesResponse>, Status> {
        let caller = caller(&request)?;
        self.limits.admit(&caller, Class::Read)?;
        let listing = ResourceListing::try_from(request.into_inner()).map_err(status)?;
        let page = self
            .access
            .list_resources(&caller, listing)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListResourcesResponse {
            resources: page.resources.into_iter().map(Into::into).collect(),
            next_page_token: page
                .next_after
                .as_ref()
                .map(resource_page_token)
                .unwrap_or_default(),
        }))
    }
}
